#!/usr/bin/env bash
# Prints the build version: git describe, plus a hash of uncommitted changes
# when the tree is dirty, so an edited sandboxd never passes for the committed one.
set -u
v=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
if [[ $v == *-dirty ]]; then
  h=$( (git diff HEAD; git ls-files -o --exclude-standard -z | xargs -0r cat) 2>/dev/null | sha256sum | cut -c1-8)
  v="$v-$h"
fi
echo "$v"
