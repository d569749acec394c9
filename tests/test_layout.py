"""The codebase's shape, as README's Layout section states it: no library file over 400 lines, no recipe over
200, and only `transformers_zoo/cli/` knows flags (imports argparse)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_files_stay_small():
    library = {p.relative_to(ROOT): lines(p) for p in (ROOT / "transformers_zoo").rglob("*.py")}
    recipes = {p.relative_to(ROOT): lines(p) for p in (ROOT / "recipes").glob("*.py")}
    assert {p: n for p, n in library.items() if n > 400} == {}
    assert {p: n for p, n in recipes.items() if n > 200} == {}


def test_only_cli_knows_flags():
    cli = ROOT / "transformers_zoo" / "cli"
    users = [p.relative_to(ROOT) for p in (ROOT / "transformers_zoo").rglob("*.py")
             if "argparse" in p.read_text(encoding="utf-8") and cli not in p.parents]
    assert users == []


def test_test_modules_have_unique_names():
    """tests/ has no __init__.py files, so pytest imports each test module by its file name: two test_x.py in
    different folders make the whole run fail at collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
