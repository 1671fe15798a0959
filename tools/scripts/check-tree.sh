#!/usr/bin/env bash
# Fails, naming each file, when the repository tracks something it should
# not: a build output (an ELF, PE or Mach-O file, any binary with the exec
# bit, or a file named like one of the module's commands), a file over
# 1 MiB, or a file that .gitignore ignores. It also fails when .gitignore
# does not ignore the binary `go build ./path/to/cmd` writes at the root.
# Run by `make test` and `make check`; without a .git it skips.
set -euo pipefail
cd "$(dirname "$0")/../.."

max_bytes=$((1024 * 1024))

if [ ! -e .git ] || ! command -v git >/dev/null 2>&1; then
  echo "check-tree: no git work tree here (or no git); skipped"
  exit 0
fi

bad=0
fail() {
  echo "check-tree: $1" >&2
  bad=1
}

# The binaries `go build` writes: one per main package, named after its
# directory. Test-only directories under tests/ are not commands.
declare -A cmd=()
cmd_dirs=$(go list -e -f '{{if eq .Name "main"}}{{.Dir}}{{end}}' ./...)
for dir in $cmd_dirs; do
  name=$(basename "$dir")
  cmd[$name]=1
  rel=${dir#"$PWD"/}
  # `go build ./rel` at the root writes ./name; `go build` inside rel
  # writes rel/name. Both must be ignored, and the directory itself not.
  for out in "$name" "$rel/$name"; do
    if ! git check-ignore -q --no-index -- "$out"; then
      fail ".gitignore does not ignore $out, which \`go build\` writes (add /$out)"
    fi
  done
  if git check-ignore -q --no-index -- "$rel/main.go"; then
    fail ".gitignore ignores $rel/main.go; anchor the pattern for the $name binary (/$name)"
  fi
done

# Tracked files that .gitignore would ignore.
while IFS= read -r -d '' path; do
  fail "$path is tracked but .gitignore ignores it"
done < <(git ls-files -z --cached --ignored --exclude-standard)

# Index sizes, by object name, in one call.
declare -A index_size=()
while read -r oid size; do
  index_size[$oid]=$size
done < <(git ls-files -s -z | tr '\0' '\n' | awk '{print $2}' | git cat-file --batch-check='%(objectname) %(objectsize)')

# Each record: "<mode> <object> <stage>\t<eol info>\t<path>".
while IFS= read -r -d '' rec; do
  meta=${rec%%$'\t'*}
  rest=${rec#*$'\t'}
  eol=${rest%%$'\t'*}
  path=${rest#*$'\t'}
  read -r mode oid _ <<<"$meta"

  size=${index_size[$oid]:-0}
  exec=0
  [ "$mode" = 100755 ] && exec=1
  if [ -f "$path" ]; then
    wsize=$(stat -c %s -- "$path")
    [ "$wsize" -gt "$size" ] && size=$wsize
    [ -x "$path" ] && exec=1
  fi

  if [ "$size" -gt "$max_bytes" ]; then
    fail "$path is $((size / 1024)) KiB; tracked files must be at most 1 MiB"
  fi

  name=$(basename "$path")
  if [ -n "${cmd[$name]:-}" ]; then
    fail "$path is named like the $name command's binary; build outputs are not tracked"
    continue
  fi

  # git classifies a file as binary (-text) when it holds a NUL byte.
  case "$eol" in
  *-text*) ;;
  *) continue ;;
  esac
  if [ -f "$path" ]; then
    magic=$(head -c 4 -- "$path" | od -An -tx1 | tr -d ' \n')
  else
    magic=$(git cat-file blob "$oid" | head -c 4 | od -An -tx1 | tr -d ' \n')
  fi
  case "$magic" in
  7f454c46) fail "$path is an ELF file (a build output)" ;;
  4d5a*) fail "$path is a PE executable (a build output)" ;;
  feedface | feedfacf | cefaedfe | cffaedfe | cafebabe) fail "$path is a Mach-O file (a build output)" ;;
  *) [ "$exec" = 1 ] && fail "$path is a binary file with the exec bit (a build output?)" ;;
  esac
done < <(git ls-files -s -z --eol)

if [ "$bad" != 0 ]; then
  echo "check-tree: remove these files from the index (git rm --cached FILE) or fix .gitignore" >&2
  exit 1
fi
echo "check-tree: ok ($(git ls-files | wc -l) tracked files)"
