#!/usr/bin/env bash
# Install the language runtimes `make snippets-test` executes the snippets with, from Debian's
# packages, when they are missing. Swift has no Debian package: its tests are skipped.
set -euo pipefail
need=()
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)
command -v php >/dev/null || need+=(php-cli)
command -v node >/dev/null || need+=(nodejs)
command -v go >/dev/null || need+=(golang-go)
command -v ruby >/dev/null || need+=(ruby)
command -v java >/dev/null || need+=(default-jdk-headless)
command -v mcs >/dev/null || need+=(mono-mcs)
[ -e /usr/lib/mono/4.5/System.Net.Http.dll ] || need+=(libmono-system-net-http4.0-cil)
# The typed snippets decode answers: Java with Jackson, C# with DataContractJsonSerializer.
[ -e /usr/share/java/jackson-databind.jar ] || need+=(libjackson2-databind-java)
[ -e /usr/lib/mono/4.5/System.Runtime.Serialization.dll ] || need+=(libmono-system-runtime-serialization4.0-cil)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
