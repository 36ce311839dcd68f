#!/bin/sh
# lint.sh: the style checks behind `make lint`. Run from the repository root.
#
# Checks every C file git knows of (tracked, plus new files not ignored):
#   1. clang-format --dry-run --Werror against the checked-in .clang-format;
#   2. cppcheck (warning, portability, performance), with the project's
#      include directories; `// cppcheck-suppress ID` works inline;
#   3. no banned function (sprintf, vsprintf, strcpy, strcat, strtok, atoi,
#      gets) in a .c or .h file: the whole word followed by "(", so that
#      snprintf, strtok_r or the English "gets" in a comment do not count.
# Prints file:line for each finding and exits 1 if there was any, 2 if a tool
# is missing.
set -u

cd "$(git rev-parse --show-toplevel 2>/dev/null || echo .)" || exit 2

for tool in git clang-format cppcheck; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "lint: $tool not found (make deps)" >&2
		exit 2
	fi
done

list=$(mktemp) || exit 2
trap 'rm -f "$list" "${out:-}"' EXIT INT TERM
git ls-files --cached --others --exclude-standard -- '*.c' '*.h' | sort -u | while IFS= read -r f; do
	[ -f "$f" ] && printf '%s\n' "$f"
done >"$list"

if [ ! -s "$list" ]; then
	echo "lint: no C files"
	exit 0
fi
nfiles=$(wc -l <"$list")
status=0

echo "lint: clang-format ($nfiles files)"
out=$(mktemp) || exit 2
if ! xargs -d '\n' clang-format --dry-run --Werror <"$list" >"$out" 2>&1; then
	status=1
	# One line per difference (file:line:col), not the quoted source.
	grep -E '^[^ ].*:[0-9]+:[0-9]+: ' "$out" | sed 's/: error: code should be clang-formatted.*/: not clang-formatted/' ||
		cat "$out"
fi
rm -f "$out"

echo "lint: cppcheck"
incs=""
for d in proto libagent/include libagent agentd; do
	[ -d "$d" ] && incs="$incs -I$d"
done
# shellcheck disable=SC2086
if ! xargs -d '\n' cppcheck --enable=warning,portability,performance --error-exitcode=1 --inline-suppr -q \
	--std=c11 -D_GNU_SOURCE --suppress=missingIncludeSystem --suppress=unmatchedSuppression \
	--template='{file}:{line}: {severity}: {message} [{id}]' $incs <"$list"; then
	status=1
fi

echo "lint: banned functions"
banned='sprintf|vsprintf|strcpy|strcat|strtok|atoi|gets'
found=$(xargs -d '\n' grep -nE "(^|[^A-Za-z0-9_])($banned)[[:space:]]*\(" <"$list")
if [ -n "$found" ]; then
	printf '%s\n' "$found" | sed 's/$/  (banned function)/'
	status=1
fi

if [ "$status" -ne 0 ]; then
	echo "lint: FAILED"
else
	echo "lint: ok"
fi
exit "$status"
