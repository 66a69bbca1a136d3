# Warnings and sanitizers for our own targets only (never for third-party code).
add_library(tdhook_warnings INTERFACE)
target_compile_options(tdhook_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow
  -Wnon-virtual-dtor -Wcast-align -Wunused -Woverloaded-virtual
  -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough)
# -Wnull-dereference is left out: GCC 12 reports it inside CLI11 and libstdc++ inlines at -O2.
# GCC 12 reports false -Wrestrict positives inside libstdc++'s std::string at -O2/-O3 (GCC bug
# 105329); they name no line of ours.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(tdhook_warnings INTERFACE -Wno-restrict)
endif()
if(TDHOOK_WERROR)
  target_compile_options(tdhook_warnings INTERFACE -Werror)
endif()
if(TDHOOK_TSAN)
  target_compile_options(tdhook_warnings INTERFACE -fsanitize=thread -fno-omit-frame-pointer)
  target_link_options(tdhook_warnings INTERFACE -fsanitize=thread)
endif()
if(TDHOOK_SANITIZE)
  target_compile_options(tdhook_warnings INTERFACE -fsanitize=address,undefined
    -fno-sanitize-recover=all -fno-omit-frame-pointer)
  target_link_options(tdhook_warnings INTERFACE -fsanitize=address,undefined)
endif()
