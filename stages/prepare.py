"""Stage prepare: data/images → data/prepared (RGB at the model's input size + manifest.csv)."""
from deepsaliency.config import load_params
from deepsaliency.data import prepare_images
from deepsaliency.models import load_model
from deepsaliency.stage import atomic_dir, run_stage


def main() -> None:
    params = load_params()
    model = load_model(**params["model"])
    with atomic_dir("data/prepared") as out:
        manifest = prepare_images(params["prepare"]["images"], out, model, params["prepare"]["resize"])
    print(manifest.to_string(index=False))


if __name__ == "__main__":
    run_stage(main)
