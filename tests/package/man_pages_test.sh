#!/usr/bin/env bash
# Every option that a program's --help shows, and each subcommand's, appears in its man page, and
# so does each default that --help shows as "=VALUE".
#   man_pages_test.sh SOURCE_DIR MAN_DIR RECEIVER_BIN TOOL_BIN
set -euo pipefail
source_dir=$1 man_dir=$2 receiver=$3 tool=$4
source "$source_dir/dist/help.sh"

failures=0
# The page's text without roff: \- is -, font changes and \& go.
page_text() {
	zcat "$1" | sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\&//g' -e 's/\\e/\\/g'
}

check_program() {
	local bin=$1 page=$2 text path opt default
	local -a words
	text=$(page_text "$page")
	# The page renders without a warning from man.
	if ! LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null | (! grep .); then
		echo "FAIL: man warns about $page"
		failures=$((failures + 1))
	fi
	while IFS= read -r path; do
		read -ra words <<<"$path"
		local checked=0
		while IFS= read -r opt; do
			checked=$((checked + 1))
			if ! grep -qE -- "(^|[^-A-Za-z0-9])$opt([^-A-Za-z0-9]|\$)" <<<"$text"; then
				echo "FAIL: $(basename "$page"): no $opt (of '$(basename "$bin") $path --help')"
				failures=$((failures + 1))
			fi
		done < <(help_options "$bin" "${words[@]}")
		if [ "$checked" -lt 1 ]; then
			echo "FAIL: no options read from '$(basename "$bin") $path --help'"
			failures=$((failures + 1))
		fi
		# CLI11 prints a default as "--opt TYPE=DEFAULT".
		while IFS= read -r default; do
			if ! grep -qF -- "$default" <<<"$text"; then
				echo "FAIL: $(basename "$page"): no default '$default' (of '$(basename "$bin") $path --help')"
				failures=$((failures + 1))
			fi
		done < <("$bin" "${words[@]}" --help | grep -oE -- '^  --[a-z-]+ [^ ]*=[^ ]+' | sed 's/^  //')
		echo "ok: $(basename "$bin") $path: $checked options"
	done < <(help_command_paths "$bin")
}

check_program "$receiver" "$man_dir/tdhook-receiver.8.gz"
check_program "$tool" "$man_dir/tdhook.1.gz"
[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
