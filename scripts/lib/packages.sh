# Sourced by scripts/test and scripts/demo.
#
# ensure_packages COMMAND:PACKAGE...
#   Installs, with apt-get and as root, the Debian package of every COMMAND that is not on
#   the PATH; exits the script if apt-get fails. Returns 1 (after saying which) when
#   something is missing and cannot be installed here (not root, or no apt-get).
ensure_packages() {
  local need=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
  done
  if [ ${#need[@]} -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${need[*]}"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; }; then
      echo "error: apt-get could not install ${need[*]}" >&2
      exit 1
    fi
  else
    echo "note: ${need[*]} missing and cannot be installed here (needs root and apt-get)" >&2
    return 1
  fi
}
