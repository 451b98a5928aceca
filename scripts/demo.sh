#!/usr/bin/env bash
# repovault's main job, end to end, on one machine: no credentials, no network.
#
#   1. build the CLI (skipped when REPOVAULT_BIN names a binary)
#   2. make three git repositories with the git CLI: two served by file:// URLs, one by `git daemon`
#   3. start `repovault standalone` (a coordinator and two workers, embedded store, local storage)
#   4. add an organisation and the repositories, back each of them up
#   5. change one repository (a new commit, a deleted branch) and back it up again
#   6. restore its first backup as a download and its second into a new empty repository,
#      and check that each restore's refs equal the source's refs at that backup's time
#   7. open the snapshot repository with stock `restic` (when installed) and the organisation's key
#
# Environment:
#   REPOVAULT_BIN   use this binary instead of building one
#   DEMO_DIR        work here, an empty or new directory that is kept (default: a new temporary
#                   directory, removed after a successful run)
#   DEMO_KEEP=1     keep the temporary work directory after a successful run (kept on failure)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
START=$SECONDS

step() { printf '\n==> %s\n' "$*"; }
run() {
    printf '  $ %s\n' "$*"
    "$@"
}
die() {
    printf '\nDEMO FAILED: %s\n' "$*" >&2
    exit 1
}

# --- 1. the binary --------------------------------------------------------------------------
if [[ -n "${REPOVAULT_BIN:-}" ]]; then
    BIN=$REPOVAULT_BIN
    step "using $BIN"
else
    step "building the CLI (cargo build --release -p repovault)"
    (cd "$ROOT" && run cargo build --release -p repovault)
    target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ "$target_dir" = /* ]] || target_dir=$ROOT/$target_dir
    BIN=$target_dir/release/repovault
fi
[[ -x "$BIN" ]] || die "$BIN is not an executable"
rv() { run "$BIN" "$@"; }

# --- work directory, isolation, clean-up ---------------------------------------------------
if [[ -n "${DEMO_DIR:-}" ]]; then
    WORK=$DEMO_DIR
    mkdir -p "$WORK"
    [[ -z "$(ls -A "$WORK")" ]] || die "DEMO_DIR $WORK is not empty"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/repovault-demo.XXXXXX")
    CREATED_WORK=1
fi
WORK=$(cd "$WORK" && pwd)
SRC=$WORK/sources   # the "hosted" repositories (bare)
EDIT=$WORK/edit     # working trees that push to them
DATA=$WORK/data     # repovault's data dir: store, keys, storage, caches
OUT=$WORK/restores
mkdir -p "$SRC" "$EDIT" "$OUT"

# git never reads the user's or the system's configuration here; the identity comes from env.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_NAME="Demo Author" GIT_AUTHOR_EMAIL="author@example.invalid"
export GIT_COMMITTER_NAME="Demo Committer" GIT_COMMITTER_EMAIL="committer@example.invalid"
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE
# The admin commands below must not pick up a token meant for another coordinator.
unset REPOVAULT_ADMIN_TOKEN_FILE

STANDALONE_PID=""
DAEMON_PID=""
OK=0
cleanup() {
    local rc=$?
    set +e
    for pid in "$STANDALONE_PID" "$DAEMON_PID"; do
        [[ -n "$pid" ]] || continue
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if [[ $OK == 1 && "${DEMO_KEEP:-0}" != 1 && "${CREATED_WORK:-0}" == 1 ]]; then
        rm -rf "$WORK"
    else
        echo "work directory kept: $WORK (coordinator log: $WORK/standalone.log)" >&2
        if [[ $OK != 1 && -f "$WORK/standalone.log" ]]; then
            echo "--- last lines of the coordinator log ---" >&2
            tail -n 30 "$WORK/standalone.log" >&2
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback port nobody answers on (and not one handed out before by this script).
USED_PORTS=" "
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 40000))
        [[ "$USED_PORTS" == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            USED_PORTS+="$p "
            echo "$p"
            return 0
        fi
    done
    die "no free loopback port found"
}

# Every ref of a repository with the object it points at, sorted: what a restore must reproduce.
refs_of() { git -C "$1" for-each-ref --format='%(objectname) %(refname)' | sort; }

# `fields` output of the CLI: "key  value" lines.
field() { awk -v k="$1" '$1 == k { print $2; exit }'; }

# --- 2. source repositories ---------------------------------------------------------------
new_source() { # NAME: a bare repository in $SRC and a working tree in $EDIT pushing to it
    git init -q --bare -b main "$SRC/$1.git"
    git init -q -b main "$EDIT/$1"
    git -C "$EDIT/$1" remote add origin "$SRC/$1.git"
}
commit() { # DIR FILE TEXT MESSAGE
    mkdir -p "$(dirname "$1/$2")"
    printf '%s\n' "$3" >>"$1/$2"
    git -C "$1" add "$2"
    git -C "$1" commit -q -m "$4"
}

step "creating source repositories under $SRC"
new_source alpha
a=$EDIT/alpha
commit "$a" README.md "# alpha" "Initial commit"
commit "$a" src/lib.rs "pub fn answer() -> u32 { 41 }" "Add lib"
git -C "$a" tag v1.0
git -C "$a" checkout -q -b feature
commit "$a" src/feature.rs "pub fn feature() {}" "Feature work"
git -C "$a" checkout -q main
commit "$a" src/lib.rs "// fixed" "Fix answer"
git -C "$a" tag -a v1.1 -m "Release 1.1"
git -C "$a" notes add -m "reviewed by the demo" HEAD
git -C "$a" push -q origin main feature --tags 'refs/notes/*:refs/notes/*'

new_source beta
commit "$EDIT/beta" notes.txt "first" "First"
commit "$EDIT/beta" notes.txt "second" "Second"
git -C "$EDIT/beta" push -q origin main

new_source gamma
commit "$EDIT/gamma" data.csv "a,b" "Data"
git -C "$EDIT/gamma" tag v0.1
git -C "$EDIT/gamma" push -q origin main --tags

for r in alpha beta gamma; do
    printf '  %-6s %s refs\n' "$r" "$(refs_of "$SRC/$r.git" | wc -l)"
done

step "serving gamma with git daemon"
GIT_PORT=$(free_port)
git daemon --reuseaddr --listen=127.0.0.1 --port="$GIT_PORT" --base-path="$SRC" \
    --export-all --informative-errors >"$WORK/git-daemon.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$GIT_PORT") 2>/dev/null && break
    kill -0 "$DAEMON_PID" 2>/dev/null || die "git daemon exited: $(cat "$WORK/git-daemon.log")"
    sleep 0.1
done
run git ls-remote "git://127.0.0.1:$GIT_PORT/gamma.git"

# --- 3. repovault standalone ---------------------------------------------------------------
GRPC_PORT=$(free_port)
HTTP_PORT=$(free_port)
export REPOVAULT_COORDINATOR=http://127.0.0.1:$GRPC_PORT
step "starting repovault standalone (log: $WORK/standalone.log)"
# file:// URLs are refused except under the roots named here: the sources backed up and the
# restores pushed to (never the data directory, whatever the roots say).
printf '  $ %s\n' "$BIN standalone --data-dir $DATA --listen 127.0.0.1:$GRPC_PORT --http-listen 127.0.0.1:$HTTP_PORT --workers 2 --allow-local-root $SRC --allow-local-root $OUT &"
NO_COLOR=1 "$BIN" standalone --data-dir "$DATA" --listen "127.0.0.1:$GRPC_PORT" \
    --http-listen "127.0.0.1:$HTTP_PORT" --workers 2 \
    --allow-local-root "$SRC" --allow-local-root "$OUT" >"$WORK/standalone.log" 2>&1 &
STANDALONE_PID=$!

step "waiting for the coordinator and its workers"
ready=0
for _ in $(seq 1 300); do
    kill -0 "$STANDALONE_PID" 2>/dev/null || die "repovault standalone exited"
    if "$BIN" workers >"$WORK/workers.txt" 2>/dev/null &&
        [[ $(grep -c standalone- "$WORK/workers.txt") -ge 2 ]]; then
        ready=1
        break
    fi
    sleep 0.2
done
[[ $ready == 1 ]] || die "the coordinator did not answer with two workers within 60 s"
rv workers

# --- 4. organisation, repositories, first backups ------------------------------------------
step "adding organisation and repositories"
# "... added (id X)" -> X
id_of() { sed -n 's/.* added (id \([^,)]*\).*/\1/p'; }
out=$(rv org add demo)
echo "$out"
ORG_ID=$(echo "$out" | id_of)
[[ -n "$ORG_ID" ]] || die "no organisation id"
declare -A REPO_ID
add_repo() { # NAME URL
    local out id
    out=$(rv repo add "demo/$1" --url "$2")
    echo "$out"
    id=$(echo "$out" | id_of)
    [[ -n "$id" ]] || die "no repository id for $1"
    REPO_ID[$1]=$id
}
add_repo alpha "file://$SRC/alpha.git"
add_repo beta "file://$SRC/beta.git"
add_repo gamma "git://127.0.0.1:$GIT_PORT/gamma.git"
rv repo list demo

backup() { # NAME -> prints the backup id; fails unless the backup completed
    local out id
    printf '  $ %s\n' "$BIN backup run demo/$1 --wait" >&2
    out=$("$BIN" backup run "demo/$1" --wait) || {
        echo "$out" >&2
        die "backup of demo/$1 failed"
    }
    echo "$out" | sed 's/^/    /' >&2
    id=$(echo "$out" | field id)
    [[ -n "$id" ]] || die "no backup id for demo/$1"
    echo "$id"
}

step "backing up every repository"
refs_of "$SRC/alpha.git" >"$WORK/alpha-at-backup-1.refs"
ALPHA_1=$(backup alpha)
BETA_1=$(backup beta)
GAMMA_1=$(backup gamma)

# --- 5. change alpha, back it up again ---------------------------------------------------
step "changing alpha: a new commit on main, branch 'feature' deleted"
commit "$a" src/lib.rs "pub fn answer() -> u32 { 42 }" "The real answer"
run git -C "$a" push -q origin main
run git -C "$a" push -q origin --delete feature
refs_of "$SRC/alpha.git" >"$WORK/alpha-at-backup-2.refs"
cmp -s "$WORK/alpha-at-backup-1.refs" "$WORK/alpha-at-backup-2.refs" && die "alpha did not change"

step "backing up alpha again"
ALPHA_2=$(backup alpha)

step "backup history"
rv backup list demo/alpha
rv backup list

# --- 5b. every backup was verified at its end; verify one again from storage ---------------
step "verification: each backup verified at its end, and alpha's second verified again"
for id in "$ALPHA_1" "$BETA_1" "$GAMMA_1" "$ALPHA_2"; do
    status=$("$BIN" backup show "$id" | field verification | cut -d' ' -f1)
    [[ $status == verified ]] || die "backup $id: verification is '$status', expected verified"
done
echo "  OK: all four backups verified (zip_integrity, git_fsck, metadata_valid, commit_count_match, size_match)"
rv backup verify "$ALPHA_2" || die "backup verify $ALPHA_2 failed (exit $?)"

# --- 6. restores, verified against the source at each backup's time ------------------------
verify() { # EXPECTED_REFS_FILE RESTORED_GIT_DIR WHAT
    refs_of "$2" >"$2.refs"
    if ! diff -u "$1" "$2.refs"; then
        die "$3: restored refs differ from the source's refs at backup time (diff above)"
    fi
    git -C "$2" fsck --no-progress --no-dangling >/dev/null 2>"$2.fsck" ||
        die "$3: git fsck failed: $(cat "$2.fsck")"
    printf '  OK: %s: %s refs equal the source at backup time; git fsck clean\n' \
        "$3" "$(wc -l <"$2.refs")"
}

step "restoring alpha's first backup ($ALPHA_1) as a download"
rv restore start "$ALPHA_1" --type full_repo --target download --path "$OUT/alpha-1.git"
verify "$WORK/alpha-at-backup-1.refs" "$OUT/alpha-1.git" "download of $ALPHA_1"
git -C "$OUT/alpha-1.git" rev-parse -q --verify refs/heads/feature >/dev/null ||
    die "the first backup should still hold branch 'feature'"

step "restoring alpha's second backup ($ALPHA_2) into a new, empty repository"
git init -q --bare -b main "$OUT/alpha-2.git"
rv restore start "$ALPHA_2" --type full_repo --target new --url "file://$OUT/alpha-2.git" --wait
verify "$WORK/alpha-at-backup-2.refs" "$OUT/alpha-2.git" "push of $ALPHA_2"

# --- 7. stock restic opens the snapshot repository -----------------------------------------
SNAPSHOT_REPO=$DATA/storage/$ORG_ID/${REPO_ID[alpha]}
[[ -f "$SNAPSHOT_REPO/config" ]] || die "no restic repository at $SNAPSHOT_REPO"
if command -v restic >/dev/null; then
    step "listing alpha's snapshots with stock restic and the exported organisation key"
    rv org key export demo --to "$WORK/demo.key"
    export RESTIC_PASSWORD_FILE=$WORK/demo.key
    run restic --no-cache --no-lock -r "$SNAPSHOT_REPO" snapshots | tee "$WORK/restic.txt"
    snapshots=$(restic --no-cache --no-lock -r "$SNAPSHOT_REPO" snapshots --json | grep -o '"short_id"' | wc -l)
    [[ $snapshots == 2 ]] || die "restic lists $snapshots snapshots of alpha, expected 2"
    run restic --no-cache --no-lock -r "$SNAPSHOT_REPO" dump latest /manifest.json >"$WORK/manifest.json"
    echo "  refs recorded in the latest snapshot's manifest.json (read back by restic):"
    sed -n '/"refs": {/,/}/p' "$WORK/manifest.json" | sed 's/^/    /'
    grep -q "\"refs/heads/main\": \"$(git -C "$SRC/alpha.git" rev-parse main)\"" "$WORK/manifest.json" ||
        die "the manifest restic read back does not name alpha's current main"
    RESTIC_LINE="stock restic opened $SNAPSHOT_REPO and listed 2 snapshots"
else
    step "restic is not installed: skipping the stock-restic check (apt-get install restic)"
    RESTIC_LINE="restic not installed: stock-restic check skipped"
fi

OK=1
cat <<EOF

==> summary ($((SECONDS - START)) s)
  coordinator     $REPOVAULT_COORDINATOR (standalone, 2 workers, data in $DATA)
  organisation    demo ($ORG_ID)
  backups         alpha: $ALPHA_1, $ALPHA_2
                  beta:  $BETA_1
                  gamma: $GAMMA_1 (over git://, git daemon)
  restore 1       $ALPHA_1 downloaded to a bare repository: refs equal alpha before the change
  restore 2       $ALPHA_2 pushed to a new empty repository: refs equal alpha after the change
  verification    every backup verified at its end; $ALPHA_2 verified again from storage
  restic          $RESTIC_LINE
  storage         $(du -sh "$DATA/storage" | cut -f1) under $DATA/storage/<org-id>/<repo-id>/
demo passed
EOF
