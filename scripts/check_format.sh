#!/usr/bin/env bash
# Checks that every C++ file of the project follows .clang-format (Debian 12's clang-format 14).
#   scripts/check_format.sh          list the files that differ, exit 1 if any (a ctest entry: `format`)
#   scripts/check_format.sh --fix    reformat them in place
# Exit 77 (ctest: skipped) when clang-format is not installed (apt-get install clang-format).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cf="${CLANG_FORMAT:-clang-format}"
command -v "$cf" >/dev/null 2>&1 || { echo "check_format: $cf not found (apt-get install clang-format)" >&2; exit 77; }
cd "$here"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files -- '*.cpp' '*.h' | grep -v '/node_modules/')
else
  mapfile -t files < <(find apps bench examples fuzz include src tests -name node_modules -prune -o \
                         \( -name '*.cpp' -o -name '*.h' \) -print | sort)
fi
if [ "${1:-}" = "--fix" ]; then
  "$cf" -i "${files[@]}"
  echo "check_format: formatted ${#files[@]} files"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  "$cf" --dry-run -Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ "${#bad[@]}" -gt 0 ]; then
  printf 'check_format: %d of %d files differ from .clang-format:\n' "${#bad[@]}" "${#files[@]}" >&2
  printf '  %s\n' "${bad[@]}" >&2
  echo "check_format: run scripts/check_format.sh --fix" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files follow .clang-format"
