#!/bin/sh
# /init (PID 1) of the svc2rules test VM: busybox ash from the initramfs built by vmbuild.py.
# harness.py appends it to the initramfs on every run, together with the job:
#   /job/run.sh (+ files)          the script to run, as root, cwd /job, stdin /dev/null
#   /etc/svc2rules-vm/job.conf     VM_MODE=host|initramfs, VM_MODULES, VM_OUT (shell)
#   /etc/svc2rules-vm/job.env      the caller's environment variables (shell)
# Serial ports: ttyS0 kernel console, ttyS1 the job's stdout+stderr, ttyS2 status lines
# ("t_init=", "t_job=", "t_end=" guest uptimes; "rc=N" or "error=..." last).
# shellcheck shell=dash
# shellcheck disable=SC1091  # the sourced files are generated per run

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run

OUT=/dev/ttyS1
ST=/dev/ttyS2
uptime_s() { cut -d' ' -f1 /proc/uptime; }
status() { echo "$*" > "$ST"; }
status "t_init=$(uptime_s)"
# raw: no \n -> \r\n translation, no echo of what the host never sends
stty -F "$OUT" raw -echo 2>/dev/null

# Reporting the status only after every other process is gone makes sure the job's output
# has been drained through ttyS1: the last close of a tty waits for its buffer to empty, and
# a daemon the job left behind would otherwise keep ttyS1 open (and its tail unsent) while
# we reboot.
kill_all_but_init() {
    kill -9 -1 2>/dev/null
    n=0
    while [ "$n" -lt 200 ]; do
        busy=0
        for f in /proc/[0-9]*/stat; do
            read -r s < "$f" 2>/dev/null || continue
            pid=${s%% *}
            rest=${s##*) }            # fields after "(comm) "
            # shellcheck disable=SC2086  # split into fields on purpose
            set -- $rest              # 1=state 2=ppid
            [ "$pid" = 1 ] || [ "$pid" = 2 ] || [ "$2" = 2 ] && continue   # init, kernel threads
            case $1 in Z|X|x) continue ;; esac
            busy=1
            break
        done
        [ $busy = 0 ] && return 0
        sleep 0.02
        n=$((n + 1))
    done
}

finish() {
    kill_all_but_init
    status "t_end=$(uptime_s)"
    status "$1"
    sync
    # qemu runs with -no-reboot, so this ends it
    reboot -f
    sleep 5
    echo b > /proc/sysrq-trigger
}

infra_error() {
    echo "svc2rules-vm: $*" > "$OUT"
    finish "error=$*"
}

VM_MODE=initramfs
VM_MODULES=""
VM_OUT=""
[ -f /etc/svc2rules-vm/job.conf ] && . /etc/svc2rules-vm/job.conf

# One modprobe call for all of them: each busybox start costs ~50 ms under TCG.
if [ -n "$VM_MODULES" ]; then
    # shellcheck disable=SC2086  # a word list on purpose
    modprobe -a $VM_MODULES > /tmp/modprobe.log 2>&1 || echo "svc2rules-vm: modprobe -a $VM_MODULES: $(cat /tmp/modprobe.log)" > "$OUT"
fi
# Module autoloading (ipvsadm's scheduler, genetlink families, "type dummy", nft
# expressions, ...) runs this /sbin/modprobe: PID 1 keeps the initramfs as its root.
echo /sbin/modprobe > /proc/sys/kernel/modprobe
ip link set lo up

if [ "$VM_MODE" = host ] || [ -n "$VM_OUT" ]; then
    modprobe -a virtio_pci 9pnet_virtio 9p overlay > /tmp/modprobe.log 2>&1 \
        || infra_error "cannot load the 9p/overlay modules: $(cat /tmp/modprobe.log)"
fi
if [ -n "$VM_OUT" ]; then
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out \
        || infra_error "cannot mount the output dir over 9p"
fi

mkdir -p /run/svc2rules-vm
ROOT=/
if [ "$VM_MODE" = host ]; then
    # The host's / read-only over 9p, a tmpfs on top: writes work and vanish with the VM.
    mkdir -p /mnt/host /mnt/rw
    mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /mnt/host \
        || infra_error "cannot mount the host root over 9p"
    mount -t tmpfs -o size=75% tmpfs /mnt/rw
    mkdir -p /mnt/rw/upper /mnt/rw/work
    mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot \
        || infra_error "cannot mount the overlay root"
    N=/newroot
    mount -t proc proc $N/proc
    mount -t sysfs sysfs $N/sys
    mount -t devtmpfs devtmpfs $N/dev
    mkdir -p $N/dev/pts $N/dev/shm
    mount -t devpts devpts $N/dev/pts
    mount -t tmpfs tmpfs $N/dev/shm
    # A fresh /run: the host's would show its network namespaces (/run/netns) and locks.
    # /tmp stays the host's (through the overlay): a checkout under /tmp must stay visible.
    mount -t tmpfs tmpfs $N/run
    mkdir -p $N/job $N/run/svc2rules-vm/root $N/lib/modules
    # bind mounts, not copies: a copy-up through overlay+9p is slow under TCG
    mount --bind /job $N/job
    mount --bind / $N/run/svc2rules-vm/root
    mount --bind /lib/modules $N/lib/modules
    if [ -n "$VM_OUT" ]; then
        mkdir -p $N/out
        mount --bind /out $N/out
    fi
    ROOT=$N
    # modprobe & co. from the initramfs first (the host's kmod, if any, knows nothing of
    # this kernel); the host's tools next; the VM's own tools as a fallback.
    PATH=/run/svc2rules-vm/root/usr/libexec/svc2rules-vm/override:/usr/local/sbin:/usr/local/bin
    PATH=$PATH:/usr/sbin:/usr/bin:/sbin:/bin:/run/svc2rules-vm/bin
    export PATH
    # the job does not need (and, under TCG, should not pay for) writing .pyc files that
    # vanish with the VM
    export PYTHONDONTWRITEBYTECODE=1
else
    ln -s / /run/svc2rules-vm/root
fi
ln -s root/usr/libexec/svc2rules-vm/bin $ROOT/run/svc2rules-vm/bin

export SVC2RULES_VM=1 SVC2RULES_VM_MODE="$VM_MODE" SVC2RULES_VM_TOOLS=/run/svc2rules-vm/bin
[ -n "$VM_OUT" ] && export SVC2RULES_VM_OUT=/out
[ -f /etc/svc2rules-vm/job.env ] && . /etc/svc2rules-vm/job.env

status "t_job=$(uptime_s)"
chroot "$ROOT" /bin/sh -c 'cd /job && exec ./run.sh' < /dev/null > "$OUT" 2>&1
finish "rc=$?"
