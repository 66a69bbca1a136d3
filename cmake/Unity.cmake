# Unity builds (TDHOOK_UNITY_BUILD, off by default; scripts/build, and so scripts/test and
# scripts/run, scripts/fuzz and .ci/run turn it on): each target compiles its sources in a few
# groups, one compiler run per group, so the heavy headers (CLI11, httplib, nlohmann/json,
# simdjson, doctest) and the templates they instantiate are compiled once per group instead of
# once per file. From scratch that is about half the compilation. A build configured without the
# option keeps one compiler run per file: an edit recompiles one file, and a file that forgets an
# include still fails there.
#
# The groups are listed by hand (tdhook_unity_group), because files compiled together share one
# translation unit: two files of a group must not both define the same name in an anonymous
# namespace (or a static function of the same name), nor use a name that another file's
# using-directive makes ambiguous; a file whose named class holds a member of an
# anonymous-namespace type is left out of every group (GCC's -Wsubobject-linkage). A file in no
# group, such as a new one, is compiled on its own; a clash shows as "redefinition of
# '...::{anonymous}::name'" or "call of overloaded '...' is ambiguous": move one of the two files
# to another group.

# Compile <targets> in their unity groups when TDHOOK_UNITY_BUILD is on.
function(tdhook_unity_build)
  if(TDHOOK_UNITY_BUILD)
    set_target_properties(${ARGN} PROPERTIES UNITY_BUILD ON UNITY_BUILD_MODE GROUP)
  endif()
endfunction()

# Put <sources> (paths relative to the current directory) in unity group <name>. Every target of
# the directory that compiles one of them uses the same groups.
function(tdhook_unity_group name)
  set_source_files_properties(${ARGN} PROPERTIES UNITY_GROUP "${name}")
endfunction()
