#!/usr/bin/env bash
# Writes a program's man page (gzip -9n) from its own --help with help2man, so that the page
# cannot drift from the program. A program with subcommands gets a COMMANDS section holding each
# subcommand's --help, nested ones too (tdhook spool ls).
#   man-page.sh PROGRAM NAME SECTION VERSION INCLUDE OUT.gz
# INCLUDE is help2man's include file for NAME (its [NAME] line, FILES, SEE ALSO...).
set -euo pipefail
program=$1 name=$2 section=$3 version=$4 include=$5 out=$6
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/help.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Run as plain NAME from PATH, so that its usage lines say "NAME", not the build folder's path.
ln -s "$(realpath "$program")" "$work/$name"
export PATH="$work:$PATH"

# roff for text shown as is: backslashes, leading dots and quotes, hyphens.
as_roff() {
	sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"
}

cp "$include" "$work/include.h2m"
mapfile -t paths < <(help_command_paths "$name" | sed '/^$/d')
if [ ${#paths[@]} -gt 0 ]; then
	{
		echo "[COMMANDS]"
		echo "Each command's own \\fB\\-\\-help\\fR, as it prints it."
		for path in "${paths[@]}"; do
			read -ra words <<<"$path"
			echo ".SS \"$name $path\""
			echo ".nf"
			"$name" "${words[@]}" --help | as_roff
			echo ".fi"
		done
	} >>"$work/include.h2m"
fi

help2man --no-info --section="$section" --version-string="$version" \
	--include="$work/include.h2m" --output="$work/page" "$name"
gzip -9n <"$work/page" >"$out.tmp"
mv "$out.tmp" "$out"
