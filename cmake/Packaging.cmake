# The Debian packages, made by CPack's DEB generator from this build (scripts/package): one build
# system for the binaries and the packages, no debian/ folder repeating the install rules.
#
#   tdhook      the receiver and the tdhook command, the systemd unit, /etc/tdhook, man pages,
#               bash completion, sample scripts and events (components runtime and service)
#   tdhook-dev  libtdhook: the static library, its headers and its CMake package (component dev);
#               a server needs none of it, and Debian keeps headers out of runtime packages
#
# Files that only the package places at absolute paths (/etc/tdhook, /lib/systemd/system,
# /usr/share/doc) are the component `service`, left out of a plain `cmake --install`, which
# installs under its prefix only. The maintainer scripts are in dist/debian/.
include(GNUInstallDirs)

set(TDHOOK_DIST_DIR "${PROJECT_SOURCE_DIR}/dist")
set(TDHOOK_PACKAGE_STAGE "${PROJECT_BINARY_DIR}/package")

# The unit: samples/config/tdhook-receiver.service names the binary where a source install puts
# it (/usr/local/bin); the package's copy names /usr/bin. One file, so they cannot disagree.
file(READ "${PROJECT_SOURCE_DIR}/samples/config/tdhook-receiver.service" tdhook_unit)
string(REPLACE "/usr/local/bin/" "/usr/bin/" tdhook_unit "${tdhook_unit}")
file(CONFIGURE OUTPUT "${TDHOOK_PACKAGE_STAGE}/tdhook-receiver.service" CONTENT "${tdhook_unit}"
  @ONLY)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  "${PROJECT_SOURCE_DIR}/samples/config/tdhook-receiver.service")
install(FILES "${TDHOOK_PACKAGE_STAGE}/tdhook-receiver.service" DESTINATION /lib/systemd/system
  COMPONENT service EXCLUDE_FROM_ALL)
install(FILES "${PROJECT_SOURCE_DIR}/samples/config/tdhook-receiver.toml" DESTINATION /etc/tdhook
  COMPONENT service EXCLUDE_FROM_ALL)

# /usr/share/doc/<package>: copyright and changelog.gz (gzip -9n: no name, no time stamp) in each.
configure_file("${TDHOOK_DIST_DIR}/debian/changelog.in" "${TDHOOK_PACKAGE_STAGE}/changelog" @ONLY)
add_custom_command(OUTPUT "${TDHOOK_PACKAGE_STAGE}/changelog.gz"
  COMMAND gzip -9nf -k "${TDHOOK_PACKAGE_STAGE}/changelog"
  DEPENDS "${TDHOOK_PACKAGE_STAGE}/changelog" VERBATIM)
add_custom_target(tdhook_package_docs ALL DEPENDS "${TDHOOK_PACKAGE_STAGE}/changelog.gz")
foreach(pkg IN ITEMS tdhook tdhook-dev)
  set(component service)
  if(pkg STREQUAL "tdhook-dev")
    set(component dev_doc)
  endif()
  install(FILES "${TDHOOK_DIST_DIR}/debian/copyright" "${TDHOOK_PACKAGE_STAGE}/changelog.gz"
    DESTINATION /usr/share/doc/${pkg} COMPONENT ${component} EXCLUDE_FROM_ALL)
endforeach()
install(FILES "${PROJECT_SOURCE_DIR}/README.md" DESTINATION /usr/share/doc/tdhook
  COMPONENT service EXCLUDE_FROM_ALL)

# Descriptions: the first line is the synopsis (CPack indents the rest, an empty line is " .").
# Every install rule without a COMPONENT is `runtime` (CMAKE_INSTALL_DEFAULT_COMPONENT_NAME).
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME tdhook)
set(CPACK_PACKAGE_VENDOR "tdhook")
set(CPACK_PACKAGE_CONTACT "tdhook maintainers <tdhook@example.org>")
# /usr whatever prefix this tree was configured with: the test tree (/usr/local) is packaged too.
# With CPACK_SET_DESTDIR, absolute destinations (/etc, /lib/systemd) land in the package's tree,
# not on this machine, and CPACK_INSTALL_PREFIX is the prefix.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ONE_PER_GROUP)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Depends: from the libraries the binaries link (dpkg-shlibdeps), plus adduser for postinst.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS OFF)

set(CPACK_DEBIAN_TDHOOK_PACKAGE_NAME tdhook)
set(CPACK_DEBIAN_TDHOOK_PACKAGE_DEPENDS "adduser")
# The sample scripts: crm-bridge.sh and operator-select.sh use curl and jq, stream-consumer.py
# python3.
set(CPACK_DEBIAN_TDHOOK_PACKAGE_RECOMMENDS "curl, jq")
set(CPACK_DEBIAN_TDHOOK_PACKAGE_SUGGESTS "python3, nats-server")
set(CPACK_DEBIAN_TDHOOK_DESCRIPTION
  "Tiledesk webhook receiver and tools
tdhook-receiver verifies Tiledesk webhook notifications (the x-hook-secret
header and the token JWT), stores them durably before answering, and delivers
them to stdout, files, scripts or HTTP endpoints, with retries and dead
letters. It runs as the systemd service tdhook-receiver.

The tdhook command verifies captured requests, signs and sends notifications
as Tiledesk does, simulates Tiledesk's subscription API and inspects the
receiver's store.")
set(CPACK_DEBIAN_TDHOOK_PACKAGE_CONTROL_EXTRA "${TDHOOK_DIST_DIR}/debian/conffiles"
  "${TDHOOK_DIST_DIR}/debian/postinst" "${TDHOOK_DIST_DIR}/debian/prerm"
  "${TDHOOK_DIST_DIR}/debian/postrm")
set(CPACK_DEBIAN_TDHOOK_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME tdhook-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
# What tdhookConfig.cmake's find_dependency() looks for: the static library's own dependencies.
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libssl-dev (>= 3), libsimdjson-dev, nlohmann-json3-dev (>= 3.11)")
set(CPACK_DEBIAN_DEV_DESCRIPTION
  "Tiledesk webhook verification library (development files)
libtdhook verifies Tiledesk webhook notifications (the x-hook-secret header
and the token JWT, HS256 or a global key) and parses them into typed C++
structs. This package holds the static library, its headers and its CMake
package: find_package(tdhook) and link tdhook::tdhook.")

# Refuses to make a package without man pages (TDHOOK_MAN_PAGES): see cmake/Manpages.cmake.
set(TDHOOK_PACKAGE_MAN_PAGES ${TDHOOK_BUILD_MAN_PAGES})
configure_file("${PROJECT_SOURCE_DIR}/cmake/CPackProjectConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/CPackProjectConfig.cmake" @ONLY)
set(CPACK_PROJECT_CONFIG_FILE "${PROJECT_BINARY_DIR}/CPackProjectConfig.cmake")

include(CPack)
cpack_add_component_group(tdhook)
cpack_add_component_group(dev)
cpack_add_component(runtime GROUP tdhook)
cpack_add_component(service GROUP tdhook)
cpack_add_component(dev GROUP dev)
cpack_add_component(dev_doc GROUP dev)
