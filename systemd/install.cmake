# Run by `cmake --install` (install(SCRIPT) in CMakeLists.txt): installs the
# systemd units, the sysusers.d entry, the example configuration and the
# optional upgrade-on-reload drop-in (in <datarootdir>/doc/sqlmux/examples).
#
# sqlmux.service names the binary and the configuration file by absolute
# path, so it is generated here, at install time, from the prefix of this
# install: `cmake --install build --prefix /usr` writes /usr/bin/sqlmux and
# /etc/sqlmux/sqlmux.toml into it, `--prefix /opt/x` /opt/x/bin/sqlmux and
# /etc/opt/x/sqlmux/sqlmux.toml (the GNUInstallDirs rules). DESTDIR stages
# the files without changing those paths.
#
# Unit directory: SQLMUX_SYSTEMD_UNITDIR when set; for prefix /usr, systemd's
# own (pkg-config systemd systemdsystemunitdir, /lib/systemd/system on
# Debian); otherwise <prefix>/lib/systemd/system (systemd also reads
# /usr/local/lib/systemd/system). The sysusers.d entry follows the same rule.
#
# The configuration: sqlmux.toml.example is always (re)installed;
# sqlmux.toml only when there is none yet, so a reinstall keeps the
# operator's file. Packages should ship sqlmux.toml as a conffile.

function(sqlmux_under_prefix out dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  else()
    set(${out} "${sqlmux_prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

string(REGEX REPLACE "/+$" "" sqlmux_prefix "${CMAKE_INSTALL_PREFIX}")  # "/" becomes ""
set(sqlmux_system_prefix OFF)
if(sqlmux_prefix STREQUAL "/usr" OR sqlmux_prefix STREQUAL "")
  set(sqlmux_system_prefix ON)
endif()

sqlmux_under_prefix(sqlmux_bindir "${SQLMUX_INSTALL_BINDIR}")
if(IS_ABSOLUTE "${SQLMUX_INSTALL_SYSCONFDIR}")
  set(sqlmux_sysconfdir "${SQLMUX_INSTALL_SYSCONFDIR}")
elseif(sqlmux_system_prefix)
  set(sqlmux_sysconfdir "/${SQLMUX_INSTALL_SYSCONFDIR}")
elseif(sqlmux_prefix MATCHES "^/opt/")
  set(sqlmux_sysconfdir "/${SQLMUX_INSTALL_SYSCONFDIR}${sqlmux_prefix}")
else()
  set(sqlmux_sysconfdir "${sqlmux_prefix}/${SQLMUX_INSTALL_SYSCONFDIR}")
endif()

if(SQLMUX_SYSTEMD_UNITDIR)
  sqlmux_under_prefix(sqlmux_unitdir "${SQLMUX_SYSTEMD_UNITDIR}")
elseif(sqlmux_system_prefix AND SQLMUX_PKG_UNITDIR)
  set(sqlmux_unitdir "${SQLMUX_PKG_UNITDIR}")
else()
  set(sqlmux_unitdir "${sqlmux_prefix}/lib/systemd/system")
endif()
if(sqlmux_system_prefix AND SQLMUX_PKG_SYSUSERSDIR)
  set(sqlmux_sysusersdir "${SQLMUX_PKG_SYSUSERSDIR}")
else()
  set(sqlmux_sysusersdir "${sqlmux_prefix}/lib/sysusers.d")
endif()

# Substituted into sqlmux.service.in.
set(SQLMUX_BINDIR "${sqlmux_bindir}")
set(SQLMUX_CONFIG_FILE "${sqlmux_sysconfdir}/sqlmux/sqlmux.toml")
set(sqlmux_gen "${SQLMUX_BINARY_DIR}/systemd")
configure_file("${SQLMUX_SOURCE_DIR}/systemd/sqlmux.service.in" "${sqlmux_gen}/sqlmux.service" @ONLY)
# The optional drop-in that makes `systemctl reload` an online upgrade: an
# example, not active (the operator copies it into sqlmux.service.d/).
sqlmux_under_prefix(sqlmux_examplesdir "${SQLMUX_INSTALL_DATAROOTDIR}/doc/sqlmux/examples")
set(SQLMUX_EXAMPLES_DIR "${sqlmux_examplesdir}")
configure_file("${SQLMUX_SOURCE_DIR}/systemd/upgrade-on-reload.conf.in" "${sqlmux_gen}/upgrade-on-reload.conf"
               @ONLY)

file(INSTALL DESTINATION "${sqlmux_unitdir}" TYPE FILE
     FILES "${sqlmux_gen}/sqlmux.service" "${SQLMUX_SOURCE_DIR}/systemd/sqlmux.socket")
file(INSTALL DESTINATION "${sqlmux_examplesdir}" TYPE FILE FILES "${sqlmux_gen}/upgrade-on-reload.conf")
file(INSTALL DESTINATION "${sqlmux_sysusersdir}" TYPE FILE RENAME sqlmux.conf
     FILES "${SQLMUX_SOURCE_DIR}/systemd/sqlmux.sysusers")
file(INSTALL DESTINATION "${sqlmux_sysconfdir}/sqlmux" TYPE FILE RENAME sqlmux.toml.example
     FILES "${SQLMUX_SOURCE_DIR}/config/examples/postgres.toml")
if(EXISTS "$ENV{DESTDIR}${SQLMUX_CONFIG_FILE}")
  message(STATUS "Keeping: $ENV{DESTDIR}${SQLMUX_CONFIG_FILE} (exists; the example is sqlmux.toml.example)")
else()
  # It will hold passwords: not world-readable (chgrp sqlmux it).
  # Inert (no user, no pool) until the operator writes one: no demo
  # credentials reach a server.
  file(INSTALL DESTINATION "${sqlmux_sysconfdir}/sqlmux" TYPE FILE RENAME sqlmux.toml
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ
       FILES "${SQLMUX_SOURCE_DIR}/config/examples/installed.toml")
endif()
