"""``python -m bench.harness compare ...`` (and ``run_one``, which the harness runs in a child process)."""

from __future__ import annotations

import fire

from bench.harness.compare import compare, run_one


def main() -> None:
    # the summary is written to files and printed as tables; fire need not echo the dict
    fire.Fire({"compare": compare, "run_one": run_one}, serialize=lambda _: None)


if __name__ == "__main__":
    main()
