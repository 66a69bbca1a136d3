# Every third-party dependency is looked up here, once. All come from Debian 12 packages
# (scripts/install-deps installs them); README.md says why each one is there.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)
find_package(OpenSSL 3 REQUIRED)
find_package(nlohmann_json 3.11 REQUIRED)
find_package(simdjson CONFIG REQUIRED)
find_package(SQLite3 REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
# Debian's cpp-httplib is a compiled library that ships only a pkg-config file; its Cflags carry
# -DCPPHTTPLIB_OPENSSL_SUPPORT etc., which must reach our code or the class layouts differ.
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
if(TDHOOK_BUILD_TESTS)
  find_package(doctest CONFIG REQUIRED)
endif()
