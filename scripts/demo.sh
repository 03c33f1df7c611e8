#!/usr/bin/env bash
# The README's main command (`make demo`). Part 1 runs the embedded default,
# the local driver: a kernel-confined sandbox on this machine (namespaces,
# read-only system dirs, Landlock, seccomp), created and used through the
# controller daemon. Part 2 starts a private OpenSSH sshd on loopback and uses
# it as a sandbox with the ssh driver (sandboxd is pushed in on first contact).
# Everything lives in a temp dir that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
DS="$PWD/bin/darkshell"
work=$(mktemp -d /tmp/darkshell-demo.XXXXXX)
export DARKSHELL_HOME="$work/home"
sshd_pid=""
cleanup() {
  "$DS" daemon stop >/dev/null 2>&1 || true
  [ -n "$sshd_pid" ] && kill "$sshd_pid" 2>/dev/null || true
  # The ssh sandbox's sandboxd agent outlives its connections (durable
  # processes); it would exit after its idle time, but its home goes now.
  pkill -f -- "sandboxd agent --socket $work/" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "local driver: darkshell sandbox create box (timed)"
start=$(date +%s%N)
"$DS" sandbox create box --pids-limit 256
"$DS" exec box -- true
echo "create to first exec completed: $(( ($(date +%s%N) - start) / 1000000 )) ms"

step "darkshell version box (confinement sandboxd reports)"
"$DS" version box

step "inside: who, where, what is visible"
"$DS" exec box --sh -- 'id; hostname; ls /; echo hello > /sandbox/hello.txt && cat /sandbox/hello.txt'
step "inside: what is refused (each line should fail)"
"$DS" exec box --sh -- 'touch /etc/x 2>&1; ls /root 2>&1; unshare -r true 2>&1; cat /proc/net/route | wc -l' || true

step "darkshell sync: a small tree into the sandbox, then one file changed (block-level delta)"
mkdir -p "$work/src/pkg"
for i in $(seq 1 50); do printf 'package pkg\n// file %d\n' "$i" > "$work/src/pkg/f$i.go"; done
"$DS" sync box "$work/src:/sandbox/src"
echo "// changed" >> "$work/src/pkg/f7.go"
"$DS" sync box "$work/src:/sandbox/src"
"$DS" exec box -- sh -c 'ls /sandbox/src/pkg | wc -l; tail -1 /sandbox/src/pkg/f7.go'

step "darkshell trace box --files: what ran in the sandbox (eBPF process tree and file audit)"
"$DS" exec box --sh -- 'cd /sandbox && (echo a | tr a b > out.txt; sh -c "exit 3"); mv out.txt moved.txt; rm moved.txt' || true
"$DS" trace box --follow=false | tail -12
"$DS" trace box --files --path /sandbox --follow=false | grep -E '/sandbox/(out|moved)' | tail -6

step "egress: deny by default; policy test says why"
"$DS" exec box -- sh -c 'curl -sS --max-time 5 http://example.invalid/ 2>&1 | head -1' || true
"$DS" policy test box --host pypi.org --port 443 --binary /usr/bin/python3 || true

step "darkshell sandbox delete box"
"$DS" sandbox delete box

step "ssh driver: start a private sshd on loopback"
mkdir -p /run/sshd 2>/dev/null || true
ssh-keygen -q -t ed25519 -N '' -f "$work/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$work/client_key"
cp "$work/client_key.pub" "$work/authorized_keys"
mkdir -p "$work/sandbox-home"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/sshd_config" <<CFG
ListenAddress 127.0.0.1
Port $port
HostKey $work/host_key
AuthorizedKeysFile $work/authorized_keys
PidFile $work/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
SetEnv HOME=$work/sandbox-home
LogLevel ERROR
CFG
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" &
sshd_pid=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
echo "sshd on 127.0.0.1:$port (home $work/sandbox-home)"

step "darkshell sandbox create demo --driver ssh (pins the host key, pushes sandboxd)"
"$DS" sandbox create demo --driver ssh --ssh "$(id -un)@127.0.0.1:$port" --identity "$work/client_key"
ls -l "$work/sandbox-home/.cache/darkshell/sandboxd/"*/sandboxd

step "darkshell sandbox list"
"$DS" sandbox list

step "darkshell version demo"
"$DS" version demo

step "darkshell exec demo -- uname -srm"
"$DS" exec demo -- uname -srm

step "stdin, stderr and exit codes"
echo "piped through the sandbox" | "$DS" exec demo -i -- tr a-z A-Z
"$DS" exec demo --sh -- 'echo to-stderr >&2; exit 3' && rc=0 || rc=$?
echo "exit status: $rc"
"$DS" exec demo -- no-such-command 2>&1 && rc=0 || rc=$?
echo "exit status: $rc"

step "200 execs, each a fresh darkshell process"
start=$(date +%s%N)
for _ in $(seq 200); do "$DS" exec demo -- true; done
end=$(date +%s%N)
echo "mean $(( (end - start) / 200 / 1000 )) µs per 'darkshell exec demo -- true'"

step "darkshell -o json sandbox get demo"
"$DS" -o json sandbox get demo

step "done; cleaning up"
