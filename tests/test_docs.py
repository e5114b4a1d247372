"""The docs say what the code does, and nothing in the repository speaks of issue numbers."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from permissions.matrix import permission_matrix_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_permission_matrix_is_printed_from_the_rules() -> None:
    page = (ROOT / "docs" / "permissions.md").read_text()
    found = re.search(r"<!-- matrix:begin -->\n(.*?)<!-- matrix:end -->", page, re.S)
    assert found, "docs/permissions.md lost its matrix markers"
    assert found.group(1) == permission_matrix_markdown(), (
        "docs/permissions.md is stale; paste this between the markers:\n" + permission_matrix_markdown()
    )


def test_no_issue_numbers_in_tracked_files() -> None:
    listed = subprocess.run(
        # the vendored GraphiQL files (app/http/graphiql, unmodified, with their licences) speak of their own
        ["git", "grep", "-n", "-i", "-E", r"issues?[ -]#?[0-9]", "--", ".", ":!*.lock", ":!app/http/graphiql/*.min.*"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert listed.returncode in (0, 1), listed.stderr
    assert listed.stdout == "", "speak of the product, not of issue numbers:\n" + listed.stdout


def test_every_doc_the_readme_links_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(((?:docs/|CONTRIBUTING)[^)#]*)", readme)
    assert links, "the README links no docs"
    missing = [link for link in links if not (ROOT / link).exists()]
    assert missing == []
    linked = {Path(link).name for link in links}
    assert {p.name for p in (ROOT / "docs").glob("*.md")} <= linked, "a page in docs/ is not linked from the README"
