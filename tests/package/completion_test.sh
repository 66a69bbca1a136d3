#!/usr/bin/env bash
# The bash completion offers exactly the options of each --help (every program, every subcommand),
# the subcommands, the choices of an option, and files for the options that take a file.
#   completion_test.sh SOURCE_DIR COMPLETION_FILE RECEIVER_BIN TOOL_BIN
set -euo pipefail
source_dir=$(realpath "$1") completion=$(realpath "$2") receiver=$(realpath "$3") tool=$(realpath "$4")
source "$source_dir/dist/help.sh"
source "$completion"

failures=0
# Completes the last word of "$@" as bash would, one candidate per line, sorted.
complete_words() {
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMP_LINE="$*"
	COMP_POINT=${#COMP_LINE}
	COMPREPLY=()
	_tdhook_complete
	[ ${#COMPREPLY[@]} -eq 0 ] || printf '%s\n' "${COMPREPLY[@]}" | sort
}

expect() {
	local what=$1 expected=$2 got=$3
	if [ "$expected" != "$got" ]; then
		echo "FAIL: $what"
		diff <(echo "$expected") <(echo "$got") | sed 's/^/  /' || true
		failures=$((failures + 1))
	else
		echo "ok: $what"
	fi
}

for bin in "$receiver" "$tool"; do
	while IFS= read -r path; do
		read -ra words <<<"$path"
		expect "$(basename "$bin") $path --<TAB>: every option of --help" \
			"$(help_options "$bin" "${words[@]}" | grep -- '^--' | sort)" \
			"$(complete_words "$bin" "${words[@]}" --)"
		expect "$(basename "$bin") $path -<TAB>: short ones too" \
			"$(help_options "$bin" "${words[@]}" | sort)" \
			"$(complete_words "$bin" "${words[@]}" -)"
		subs=$(help_subcommands "$bin" "${words[@]}" | sort)
		if [ -n "$subs" ]; then
			expect "$(basename "$bin") $path <TAB>: its subcommands" "$subs" \
				"$(complete_words "$bin" "${words[@]}" "")"
		fi
	done < <(help_command_paths "$bin")
done

# The subcommand path is found past options: tdhook spool --data-dir X ls --st<TAB>.
expect "options of the subcommand typed after parent options" "--state" \
	"$(complete_words "$tool" spool --data-dir /tmp ls --st)"
expect "choices from --help's {…}" "$(printf '%s\n' both header token)" \
	"$(complete_words "$tool" verify --mode "")"
expect "choices, partly typed" "dead" "$(complete_words "$tool" spool ls --state dea)"
expect "sample names from tdhook events" "lead.create" \
	"$(complete_words "$tool" send --sample lead.cr)"

# Files and directories.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/conf.d"
touch "$work/receiver.toml" "$work/secret"
cd "$work"
expect "--config takes a file" "$(printf '%s\n' receiver.toml)" \
	"$(complete_words "$receiver" --config rec)"
for opt in --secret-file --global-secret-file --tls-cert --tls-key --http-ca --store-ca \
	--store-creds --inspect-token-file; do
	expect "$opt takes a file" "secret" "$(complete_words "$receiver" "$opt" sec)"
done
expect "--data-dir takes a directory" "conf.d" "$(complete_words "$receiver" --data-dir "")"
expect "tdhook verify REQUEST_FILE is a file" "secret" "$(complete_words "$tool" verify sec)"
expect "tdhook sign --payload takes a file" "receiver.toml" \
	"$(complete_words "$tool" sign --payload rec)"
expect "a value that is not a file is not completed" "" \
	"$(complete_words "$receiver" --listen "")"

[ "$failures" -eq 0 ] || { echo "$failures failure(s)"; exit 1; }
