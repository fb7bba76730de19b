#!/bin/sh
# The two backends whose toolchains are Debian packages, not PyPI ones: gfortran (backend
# `fortran`) and libadolc-dev (backend `adolc`).  Installs them when this is a Debian-like machine
# and we are root (as on CI); elsewhere it says what to install and carries on, and those two
# backends report themselves unavailable with that line as the reason.  Both README commands
# run this first; it never fails the command it is part of.
PKGS="gfortran libadolc-dev"
missing=""
command -v gfortran >/dev/null 2>&1 || missing="$missing gfortran"
[ -f /usr/include/adolc/adolc.h ] || missing="$missing libadolc-dev"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing$missing" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing) >/dev/null 2>&1 \
    || echo "system-deps: apt-get install$missing failed; the fortran/adolc backends will be unavailable" >&2
else
  echo "system-deps: not installed:$missing (as root: apt-get install -y $PKGS); the fortran/adolc backends will be unavailable" >&2
fi
exit 0
