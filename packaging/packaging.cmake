# Read by cpack (CPACK_PROJECT_CONFIG_FILE) before it installs the tree.
# The service unit names <prefix>/sbin/retentiond and <sysconfdir>, fixed
# when the tree was configured: a package of a /usr/local tree would install
# a unit that runs a binary it does not ship.
if(CPACK_GENERATOR STREQUAL "DEB" AND NOT CPACK_PACKAGING_INSTALL_PREFIX STREQUAL "/usr")
  message(FATAL_ERROR "the Debian package needs a tree configured with -DCMAKE_INSTALL_PREFIX=/usr "
    "(this one has ${CPACK_PACKAGING_INSTALL_PREFIX}); scripts/check-package.sh does it")
endif()
