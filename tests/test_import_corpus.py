"""Every test file that pydicom, pydicom-data and nibabel ship gets the outcome reviewed in
tests/data/import_corpus.csv (see tests/import_corpus.py): decoded with its shape, or refused with its
message. No file may raise anything but the importer's own refusal."""

import csv
import difflib
import io
import re

import pytest

from .import_corpus import TABLE, as_csv, outcomes, roots


def test_every_file_the_installed_packages_ship_gets_its_reviewed_outcome():
    installed = {package for package, _ in roots()}
    if "pydicom-data" not in installed:
        pytest.skip("!!! SKIPPED here: pydicom-data is not installed (make install-test installs it) !!!")
    rows = outcomes()
    assert [r for r in rows if r["outcome"] == "error"] == [], "a decoder raised something the importer does not name"
    # A message names the file, never the server's folders (and so the table is the same on every checkout).
    assert [r["detail"] for r in rows if re.search(r"(?<![\w.])/[\w.-]+/", r["detail"])] == []
    expected = [r for r in csv.DictReader(io.StringIO(TABLE.read_text())) if r["package"] in installed]
    want, got = as_csv(expected).splitlines(), as_csv(rows).splitlines()
    diff = "\n".join(list(difflib.unified_diff(want, got, "reviewed table", "now", lineterm=""))[:60])
    assert want == got, f"outcomes changed; review, then `python -m tests.import_corpus --write`:\n{diff}"
    assert sum(r["outcome"] == "decoded" for r in rows) >= 100  # the corpus really was there
