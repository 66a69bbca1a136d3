# Reads the programs' own --help (CLI11's layout), for the man pages, the tests of the man pages
# and of the bash completion. Sourced: help_options CMD..., help_subcommands CMD...
#
#   Options:                       <- a section title, alone on its line
#     -h,--help        Print ...   <- an entry: two spaces, the names, its type, its description
#     --global-secret-file FILE ...
#                      File ...    <- a continuation: deeper indentation

# The section of "CMD... --help" named $1, one entry's first word per line.
help_section() {
	local section=$1
	shift
	"$@" --help 2>/dev/null | awk -v title="$section:" '
		/^[A-Za-z][A-Za-z ]*:$/ { on = ($0 == title); next }
		/^[^ ]/ { on = 0 }
		on && /^  [^ ]/ { print $1 }'
}

# Every option name of "CMD... --help": -h and --help from "-h,--help".
help_options() {
	help_section Options "$@" | tr ',' '\n' | grep -E '^--?[A-Za-z0-9]'
}

# The subcommands of "CMD... --help".
help_subcommands() {
	help_section Subcommands "$@"
}

# Every command path under CMD, depth first, one per line: "", "spool", "spool ls", ...
help_command_paths() {
	local prefix=("$@") sub
	local -a subs
	echo ""
	mapfile -t subs < <(help_subcommands "${prefix[@]}")
	for sub in "${subs[@]}"; do
		help_command_paths "${prefix[@]}" "$sub" | sed "s/^/$sub /; s/ \$//"
	done
}
