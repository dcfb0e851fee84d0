"""Stage masks: RISE masks in compact form → data/masks/masks.npz."""

from deepsaliency.params import load_params
from deepsaliency.rise import generate_masks
from deepsaliency.stage import atomic_dir, run_stage


def main() -> None:
    params = load_params()
    rise, size = params["rise"], params["model"]["input_size"]
    masks = generate_masks(rise["N"], rise["s"], rise["p1"], (size, size), rise["seed"], sampling=rise["sampling"])
    with atomic_dir("data/masks") as out:
        masks.save(out / "masks.npz")
    print(f"{len(masks)} {masks.sampling} masks, s={masks.s}, p1={masks.p1}, {size}×{size}")


if __name__ == "__main__":
    run_stage(main)
