#!/usr/bin/env bash
# The sandbox's guarantees in every mode docs/design.md's trust model names (rule 5):
#   root, root without CAP_SYS_ADMIN (Docker's default, so Gradescope), an ordinary user.
# In each mode: the escape tests (tests/test_sandbox_escape.py), then one batch grading of
# the reference, the template and mutants; their scores must be identical in all modes.
# Run as root (CI does): `bash scripts/test_modes.sh` from the checkout, after `make test`'s set-up.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=$REPO/.venv/bin/python
[ "$(id -u)" = 0 ] || { echo "test_modes.sh: run as root (it switches to the other modes)"; exit 2; }
command -v capsh >/dev/null || { echo "test_modes.sh: capsh is missing (Debian: libcap2-bin)"; exit 2; }

WORK=$(mktemp -d /tmp/grader-modes-XXXXXX)
chmod 755 "$WORK"
USER_NAME=grader-mode-test
id "$USER_NAME" >/dev/null 2>&1 || useradd --no-create-home --shell /usr/sbin/nologin "$USER_NAME"

# An ordinary user must be able to reach the checkout and the installed packages. Folders
# above them that others cannot enter (a checkout under /root) get o+x for the run only.
opened=()
# The checkout itself must also be listable (pytest scans its root): a clone made in a
# `mktemp -d` folder is 0700.
REPO_MODE=$(stat -c %a "$REPO")
restore() {
  for dir in "${opened[@]}"; do chmod o-x "$dir"; done
  chmod "$REPO_MODE" "$REPO"
  rm -rf "$WORK"
}
trap restore EXIT
chmod o+rx "$REPO"
SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
for target in "$REPO" "$SITE"; do
  dir=$target
  while [ "$dir" != / ]; do
    if [ $(( 0$(stat -c %a "$dir") & 1 )) = 0 ]; then chmod o+x "$dir"; opened+=("$dir"); fi
    dir=$(dirname "$dir")
  done
done
# The venv's interpreter is a link into the root's pyenv (0700): the ordinary user runs a
# Python of the same minor version from the system, on the venv's packages.
VERSION=$($PY -c 'import sys; print("%d.%d" % sys.version_info[:2])')
USER_PY=""
for candidate in "/usr/bin/python$VERSION" "/usr/local/bin/python$VERSION"; do
  if [ -x "$candidate" ]; then USER_PY=$candidate; break; fi
done
[ -n "$USER_PY" ] || { echo "test_modes.sh: no python$VERSION outside the root's home for the ordinary user"; exit 2; }

# The notebooks: reference, template, and mutants that lose points in different parts.
mkdir -p "$WORK/notebooks"
(cd tests && $PY - "$WORK/notebooks" <<'PYEOF'
import sys
from pathlib import Path
from submissions import TEMPLATE_NOTEBOOK, make_notebook
from test_pa2_colourization import MUTANTS
out = Path(sys.argv[1])
make_notebook(out, "reference")
make_notebook(out, "template", base=TEMPLATE_NOTEBOOK)
for mutant in MUTANTS[::6]:
    make_notebook(out, mutant.name, **mutant.spec())
PYEOF
)
chmod -R a+rX "$WORK/notebooks"

# One secret seed for every mode: the modes must agree on the same grading, and a mutant's
# hidden checks can go differently on another seed (a1_greyscale_only's A.1 once got 0 and 1).
run_mode() {  # name, then the command prefix
  local mode=$1; shift
  local out="$WORK/out-$mode"
  mkdir -p "$out" && chmod 777 "$out"
  echo "== mode: $mode"
  "$@" "cd '$REPO' && PYTHONPATH='$PYPATH' HOME='$out' $PYRUN -m pytest -q -p no:cacheprovider tests/test_sandbox_escape.py"
  "$@" "cd '$out' && PYTHONPATH='$PYPATH' HOME='$out' $PYRUN -m grader.cli '$WORK/notebooks' --out '$out/results' --no-train --quiet --timeout 20 --seed 1 > '$out/batch.log' 2>&1 || true"
  grep -i "isolation" "$out/batch.log" || true
  cut -d, -f1-9 "$out/results/gradebook.csv" > "$WORK/scores-$mode.csv"
}

PYPATH=$REPO PYRUN=$PY run_mode root bash -c
PYPATH=$REPO PYRUN=$PY run_mode no-sys-admin capsh --drop=cap_sys_admin -- -c
PYPATH=$REPO:$SITE PYRUN=$USER_PY run_mode user su "$USER_NAME" -s /bin/bash -c

echo "== scores"
cat "$WORK/scores-root.csv"
for mode in no-sys-admin user; do
  if ! diff -u "$WORK/scores-root.csv" "$WORK/scores-$mode.csv"; then
    echo "test_modes.sh: scores differ between root and $mode"; exit 1
  fi
done
echo "test_modes.sh: same scores in all modes"
