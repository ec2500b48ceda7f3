"""Run a Jupyter notebook top to bottom as a test, and fail on the first cell that fails.

usage: run_notebook.py <notebook.ipynb> [--timeout SECONDS] [--save EXECUTED.ipynb]

The kernel is this Python (tests/.venv's, with ipykernel), started in the notebook's
folder with this process's environment, so a test hands a notebook its inputs through
variables (MEDLAKE_DATA, ...). Everything the cells print is echoed here, cell by cell,
so the calling test can check what a notebook found. Exit status 0 only if every cell ran.
"""

import argparse
import os
import sys

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def echo(cell_index, cell):
    outputs = []
    # The kernel flushes a stream on a timer, so one printed line can arrive as two stream
    # outputs: consecutive ones are joined before the text is split into lines.
    for output in cell.get("outputs", []):
        previous = outputs[-1] if outputs else None
        if (
            output.get("output_type") == "stream"
            and previous is not None
            and previous.get("output_type") == "stream"
            and previous.get("name") == output.get("name")
        ):
            outputs[-1] = {**previous, "text": previous["text"] + output.get("text", "")}
        else:
            outputs.append(output)
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            text = output.get("text", "")
        elif kind in ("execute_result", "display_data"):
            text = output.get("data", {}).get("text/plain", "")
        elif kind == "error":
            text = "\n".join(output.get("traceback", []))
        else:
            continue
        for line in str(text).splitlines():
            print(f"[cell {cell_index}] {line}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("notebook")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    parser.add_argument("--save", help="write the executed notebook here")
    args = parser.parse_args()

    nb = nbformat.read(args.notebook, as_version=4)
    client = NotebookClient(
        nb,
        timeout=args.timeout,
        kernel_name="python3",
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(args.notebook))}},
    )
    failed = None
    try:
        client.execute()
    except CellExecutionError as e:
        failed = e
    finally:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                echo(i, cell)
        if args.save:
            nbformat.write(nb, args.save)
    if failed is not None:
        print(f"notebook {args.notebook} failed:\n{failed}", file=sys.stderr)
        sys.exit(1)
    print(f"notebook {args.notebook}: every cell ran")


if __name__ == "__main__":
    main()
