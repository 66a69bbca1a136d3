# What a shell user gets besides the programs: man pages made from the programs' own --help by
# help2man (dist/man/man-page.sh), so that they cannot drift, and bash completion that reads the
# same --help when it completes (dist/bash-completion/tdhook).
#
# TDHOOK_MAN_PAGES: AUTO (the default) makes them when help2man is installed; ON requires it
# (scripts/package: a package always has them); OFF never.
set(TDHOOK_MAN_PAGES AUTO CACHE STRING "Make the man pages with help2man: AUTO, ON or OFF")
set_property(CACHE TDHOOK_MAN_PAGES PROPERTY STRINGS AUTO ON OFF)
set(TDHOOK_BUILD_MAN_PAGES OFF)
if(NOT TDHOOK_MAN_PAGES STREQUAL "OFF")
  find_program(TDHOOK_HELP2MAN help2man)
  if(TDHOOK_HELP2MAN)
    set(TDHOOK_BUILD_MAN_PAGES ON)
  elseif(TDHOOK_MAN_PAGES STREQUAL "ON")
    message(FATAL_ERROR "TDHOOK_MAN_PAGES=ON but help2man is not installed (apt-get install "
      "help2man, or scripts/install-deps)")
  else()
    message(STATUS "help2man not found: no man pages (TDHOOK_MAN_PAGES=AUTO); scripts/package "
      "needs them")
  endif()
endif()

if(TDHOOK_BUILD_MAN_PAGES)
  set(tdhook_man_dir "${PROJECT_BINARY_DIR}/man")
  set(tdhook_man_pages "")
  # target name section
  foreach(page IN ITEMS "tdhook-receiver;tdhook-receiver;8" "tdhook;tdhook;1")
    list(GET page 0 target)
    list(GET page 1 name)
    list(GET page 2 section)
    set(out "${tdhook_man_dir}/${name}.${section}.gz")
    add_custom_command(OUTPUT "${out}"
      COMMAND "${CMAKE_COMMAND}" -E make_directory "${tdhook_man_dir}"
      COMMAND "${PROJECT_SOURCE_DIR}/dist/man/man-page.sh" "$<TARGET_FILE:${target}>" ${name}
        ${section} ${PROJECT_VERSION} "${PROJECT_SOURCE_DIR}/dist/man/${name}.h2m" "${out}"
      DEPENDS ${target} "${PROJECT_SOURCE_DIR}/dist/man/man-page.sh"
        "${PROJECT_SOURCE_DIR}/dist/help.sh" "${PROJECT_SOURCE_DIR}/dist/man/${name}.h2m"
      COMMENT "Man page ${name}(${section}) from ${name} --help"
      VERBATIM)
    install(FILES "${out}" DESTINATION "${CMAKE_INSTALL_MANDIR}/man${section}")
    list(APPEND tdhook_man_pages "${out}")
  endforeach()
  add_custom_target(tdhook_man_pages ALL DEPENDS ${tdhook_man_pages})
endif()

# bash-completion loads a command's completion from a file named after the command.
foreach(command IN ITEMS tdhook tdhook-receiver)
  install(FILES "${PROJECT_SOURCE_DIR}/dist/bash-completion/tdhook"
    DESTINATION "${CMAKE_INSTALL_DATADIR}/bash-completion/completions" RENAME ${command})
endforeach()
