"""Stage report: artifacts and metrics → reports/figures/*.png, reports/report.md, reports/index.html.

The logic lives in deepsaliency.report; every output is written all-or-nothing.
"""

from deepsaliency.models import imagenet_labels
from deepsaliency.params import load_params
from deepsaliency.report import write_report
from deepsaliency.stage import run_stage


def main() -> None:
    params = load_params()
    report = write_report(".", "reports", params=params, plot_params=params["plots"], labels=imagenet_labels())
    print(f"report: {len(report.figures)} figures → reports/figures/, reports/report.md, reports/index.html")
    for note in report.notes:
        print(f"report: note: {note}")


if __name__ == "__main__":
    run_stage(main)
