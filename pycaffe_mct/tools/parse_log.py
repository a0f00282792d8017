"""``parse_log LOG OUTDIR``: a Caffe (or pycaffe_mct) training log to two CSV tables.

Writes ``OUTDIR/<log name>.train`` and ``.test`` with the columns of Caffe's
``tools/extra/parse_log.py``: NumIters, Seconds (since the "Solving" line),
LearningRate, then one column per net output (loss, accuracy, ...).  Both
glog prefixes are read: the classic ``I1128 02:47:35.248430`` (the year then
comes from the file's modification time) and ``I20261128 02:47:35.248430``.

Unlike Caffe's script, a row's LearningRate is the rate logged for that very
iteration (Caffe's lags one display interval behind, because the rate line
follows the outputs it belongs to).
"""
import argparse
import csv
import datetime
import io
import os
import re
import sys
from collections import OrderedDict

from ..proto_io import write_atomically

_PREFIX = re.compile(r"^[IWEF](\d{8}|\d{4}) (\d\d):(\d\d):(\d\d)\.(\d{6})\s+\d+\s+\S+\] (.*)$")
_ITERATION = re.compile(r"Iteration (\d+)")
_LEARNING_RATE = re.compile(r"lr = ([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)")
_OUTPUT = re.compile(r"(Train|Test) net output #\d+: (\S+) = ([-+.\deEinfa]+)")


def _timestamp(match, year):
    """The datetime of a prefixed line; ``year`` is used when the prefix has none."""
    date = match.group(1)
    if len(date) == 8:
        year, date = int(date[:4]), date[4:]
    hour, minute, second, micro = (int(match.group(i)) for i in range(2, 6))
    return datetime.datetime(year, int(date[:2]), int(date[2:]), hour, minute, second, micro)


def _prefixed_lines(path):
    """(datetime, message) for every glog line of the log, years filled in."""
    year = datetime.datetime.fromtimestamp(os.path.getmtime(path)).year
    last_month = None
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            match = _PREFIX.match(line.rstrip("\n"))
            if not match:
                continue
            month = int(match.group(1)[-4:-2])
            if last_month is not None and month < last_month and len(match.group(1)) == 4:
                year += 1   # the log ran over New Year
            last_month = month
            yield _timestamp(match, year), match.group(6)


def parse_log(path):
    """``(train_rows, test_rows)``: lists of OrderedDicts, one per logged iteration."""
    lines = list(_prefixed_lines(path))
    start = next((when for when, message in lines if "Solving" in message),
                 lines[0][0] if lines else None)
    rows = {"Train": [], "Test": []}
    rates = {}
    iteration = None
    for when, message in lines:
        found = _ITERATION.search(message)
        if found:
            iteration = int(found.group(1))
        if iteration is None:
            continue
        rate = _LEARNING_RATE.search(message)
        if rate:
            rates[iteration] = float(rate.group(1))
        output = _OUTPUT.search(message)
        if output:
            kind, name, value = output.groups()
            table = rows[kind]
            if not table or table[-1]["NumIters"] != iteration or name in table[-1]:
                table.append(OrderedDict([("NumIters", iteration),
                                          ("Seconds", (when - start).total_seconds()),
                                          ("LearningRate", float("nan"))]))
            table[-1][name] = float(value)
    for table in rows.values():
        _fill_learning_rates(table, rates)
    return rows["Train"], rows["Test"]


def _fill_learning_rates(table, rates):
    """Each row gets the last rate logged at or before its iteration (else the first)."""
    logged = sorted(rates.items())
    for row in table:
        earlier = [rate for it, rate in logged if it <= row["NumIters"]]
        if earlier:
            row["LearningRate"] = earlier[-1]
        elif logged:
            row["LearningRate"] = logged[0][1]


def write_csv(path, rows, delimiter=","):
    """Write ``rows`` (dicts with the same keys) as CSV; nothing if there are none."""
    if not rows:
        return False
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0].keys()), delimiter=delimiter,
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_atomically(path, buffer.getvalue())
    return True


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="parse_log", description="Parse a Caffe training log into two CSV files "
                                      "(LOG.train and LOG.test) in OUTDIR.")
    parser.add_argument("logfile_path", help="a Caffe or pycaffe_mct training log")
    parser.add_argument("output_dir", help="OUTDIR, where the two CSV files go")
    parser.add_argument("--delimiter", default=",", help="column separator of the CSV files")
    parser.add_argument("--verbose", action="store_true",
                        help="print the names of the files written")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not os.path.isfile(args.logfile_path):
        print(f"error: {args.logfile_path}: no such log file", file=sys.stderr)
        return 1
    train, test = parse_log(args.logfile_path)
    base = os.path.join(args.output_dir, os.path.basename(args.logfile_path))
    for suffix, rows in ((".train", train), (".test", test)):
        written = write_csv(base + suffix, rows, args.delimiter)
        if args.verbose:
            print(f"Wrote {base + suffix}" if written else f"Not writing {base + suffix}; "
                                                          f"no lines to write")
    return 0


if __name__ == "__main__":
    sys.exit(main())
