#!/bin/sh
# /init (PID 1) of the svc2rules test VM: busybox ash from the initramfs built by vmbuild.py.
# harness.py appends it to the initramfs on every run, together with the job:
#   /job/run.sh (+ files)          the script to run, as root, cwd /job, stdin /dev/null
#   /etc/svc2rules-vm/job.conf     VM_MODE=host|initramfs, VM_MODULES, VM_OUT (shell)
#   /etc/svc2rules-vm/job.env      the caller's environment variables (shell)
# Serial ports: ttyS0 kernel console, ttyS1 the job's stdout+stderr, ttyS2 status lines
# ("t_<stage>=<guest uptime>" marks, then "rc=N" or "error=...").
# Every fork+exec costs 50-100 ms under TCG, so this uses shell builtins where it can and
# does its mounts in a few `mount -a` calls over generated fstabs.
# shellcheck shell=dash
# shellcheck disable=SC1091  # the sourced files are generated per run

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LANG=C.UTF-8
OUT=/dev/ttyS1
ST=/dev/ttyS2

# The initramfs is already a writable tmpfs, so /tmp and /run need no mounts of their own.
# /run/svc2rules-vm/root: the initramfs itself, for the fallback tools (vmbuild.py) in both
# modes; /run/svc2rules-vm/bin links to them.
cat > /etc/fstab <<'EOF'
proc /proc proc defaults 0 0
sysfs /sys sysfs defaults 0 0
devtmpfs /dev devtmpfs defaults 0 0
EOF
mount -a
mkdir -p /dev/pts /dev/shm
cat > /etc/fstab <<'EOF'
devpts /dev/pts devpts defaults 0 0
tmpfs /dev/shm tmpfs defaults 0 0
/ /run/svc2rules-vm/root none bind 0 0
EOF
mount -a

mark() {
    read -r up _ < /proc/uptime
    echo "t_$1=$up" > "$ST"
}
status() { echo "$*" > "$ST"; }
mark init
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
    mark end
    status "$1"
    # qemu runs with -no-reboot, so this ends it (and syncs first)
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

NEED_9P=""
if [ "$VM_MODE" = host ] || [ -n "$VM_OUT" ]; then
    NEED_9P="virtio_pci 9pnet_virtio 9p overlay"
fi
# one modprobe call for all of them
if [ -n "$VM_MODULES$NEED_9P" ]; then
    # shellcheck disable=SC2086  # word lists on purpose
    modprobe -a $NEED_9P $VM_MODULES > /tmp/modprobe.log 2>&1 \
        || echo "svc2rules-vm: modprobe -a $NEED_9P $VM_MODULES: $(cat /tmp/modprobe.log)" > "$OUT"
fi
mark modules
# Module autoloading (ipvsadm's scheduler, genetlink families, "type dummy", nft
# expressions, ...) runs this /sbin/modprobe: PID 1 keeps the initramfs as its root.
echo /sbin/modprobe > /proc/sys/kernel/modprobe
ip link set lo up

P9="trans=virtio,version=9p2000.L,msize=512000"
ROOT=/
if [ "$VM_MODE" = host ]; then
    # The host's / read-only over 9p, a tmpfs on top: writes work and vanish with the VM.
    N=/newroot
    {
        echo "host /mnt/host 9p $P9,ro,cache=loose 0 0"
        echo "tmpfs /mnt/rw tmpfs size=75% 0 0"
        [ -n "$VM_OUT" ] && echo "out /out 9p $P9 0 0"
    } > /etc/fstab
    mount -a 2> /tmp/mount.log || infra_error "cannot mount the host root over 9p: $(cat /tmp/mount.log)"
    mkdir -p /mnt/rw/upper /mnt/rw/work
    echo "overlay $N overlay lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work 0 0" > /etc/fstab
    mount -a 2> /tmp/mount.log || infra_error "cannot mount the overlay root: $(cat /tmp/mount.log)"
    # (in the overlay's upper layer: the host need not have them)
    mkdir -p $N/job $N/lib/modules $N/out
    # Fresh proc and sys; /dev and /run are the initramfs' (bind mounts, not copies: a
    # copy-up through overlay+9p is slow under TCG).  The host's /run would show its network
    # namespaces (/run/netns) and locks.  /tmp stays the host's (through the overlay): a
    # checkout under /tmp must stay visible.
    {
        echo "proc $N/proc proc defaults 0 0"
        echo "sysfs $N/sys sysfs defaults 0 0"
        echo "/dev $N/dev none rbind 0 0"
        echo "/run $N/run none rbind 0 0"
        echo "/job $N/job none bind 0 0"
        echo "/lib/modules $N/lib/modules none bind 0 0"
        [ -n "$VM_OUT" ] && echo "/out $N/out none bind 0 0"
    } > /etc/fstab
    mount -a 2> /tmp/mount.log || infra_error "cannot set up the host root: $(cat /tmp/mount.log)"
    ROOT=$N
    mark root
    # modprobe & co. from the initramfs first (the host's kmod, if any, knows nothing of
    # this kernel); the host's tools next; the VM's own tools as a fallback.
    PATH=/run/svc2rules-vm/root/usr/libexec/svc2rules-vm/override:/usr/local/sbin:/usr/local/bin
    PATH=$PATH:/usr/sbin:/usr/bin:/sbin:/bin:/run/svc2rules-vm/bin
    export PATH
elif [ -n "$VM_OUT" ]; then
    echo "out /out 9p $P9 0 0" > /etc/fstab
    mount -a 2> /tmp/mount.log || infra_error "cannot mount the output dir over 9p: $(cat /tmp/mount.log)"
fi

export SVC2RULES_VM=1 SVC2RULES_VM_MODE="$VM_MODE" SVC2RULES_VM_TOOLS=/run/svc2rules-vm/bin
[ -n "$VM_OUT" ] && export SVC2RULES_VM_OUT=/out
[ -f /etc/svc2rules-vm/job.env ] && . /etc/svc2rules-vm/job.env

mark job
chroot "$ROOT" /bin/sh -c 'cd /job && exec ./run.sh' < /dev/null > "$OUT" 2>&1
finish "rc=$?"
