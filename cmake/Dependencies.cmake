# Every third-party dependency is looked up here, once. All come from Debian 12 packages
# (scripts/install-deps installs them); README.md says why each one is there.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(nlohmann_json 3.11 REQUIRED)
find_package(simdjson CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
# toml++ reads the receiver's config file. Debian's tomlplusplus::tomlplusplus points at its
# shared library, built with exceptions (only toml::ex::parse is in it); the receiver compiles
# the same headers header-only with TOML_EXCEPTIONS=0 instead, so that a parse error comes back
# as a toml::parse_result. tdhook_tomlplusplus is that: the package's headers, no library.
find_package(tomlplusplus 3.3 CONFIG REQUIRED)
add_library(tdhook_tomlplusplus INTERFACE)
target_include_directories(tdhook_tomlplusplus SYSTEM INTERFACE
  $<TARGET_PROPERTY:tomlplusplus::tomlplusplus,INTERFACE_INCLUDE_DIRECTORIES>)
target_compile_definitions(tdhook_tomlplusplus INTERFACE TOML_HEADER_ONLY=1 TOML_EXCEPTIONS=0)
# Debian's cpp-httplib is a compiled library that ships only a pkg-config file; its Cflags carry
# -DCPPHTTPLIB_OPENSSL_SUPPORT etc., which must reach our code or the class layouts differ.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
# The NATS C client (with JetStream): the receiver's distributed store, --store nats://. Through
# pkg-config: Debian's CMake package (cnats::nats) names libnats_static.a and libprotobuf-c.so in
# its export file, which libnats-dev does not install, so find_package(cnats) fails.
pkg_check_modules(NATS REQUIRED IMPORTED_TARGET libnats)
if(TDHOOK_BUILD_TESTS)
  find_package(doctest CONFIG REQUIRED)
endif()
