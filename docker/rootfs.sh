# Sourced by the image scripts: fills a root file system for a `FROM scratch` image
# with a dynamically linked binary and everything `ldd` says it loads. This machine
# has no registry to pull a base image from, and a scratch image with just these
# files is also the smallest thing that runs the binary.
#
#   . docker/rootfs.sh
#   rootfs_init ROOT            # the host's merged-/usr symlinks (/lib -> usr/lib ...)
#   rootfs_add_binary ROOT BIN  # BIN at the same path, its libraries and the loader
#   rootfs_add_file ROOT FILE   # one more file, at the same path

rootfs_init() {
    mkdir -p "$1"
    for d in bin sbin lib lib32 lib64 libx32; do
        if [ -L "/$d" ]; then
            ln -s "$(readlink "/$d")" "$1/$d"
            mkdir -p "$1/$(dirname "/$d")/$(readlink "/$d")" 2>/dev/null || true
        fi
    done
}

# The file's contents (symlinks followed) at the same path, plus at the real file's
# path when FILE is a symlink to it (the loader is found by either name).
rootfs_add_file() {
    mkdir -p "$1$(dirname "$2")"
    cp -L "$2" "$1$2"
    real=$(readlink -f "$2")
    if [ "$real" != "$2" ] && [ ! -e "$1$real" ]; then
        mkdir -p "$1$(dirname "$real")"
        cp -L "$2" "$1$real"
    fi
}

rootfs_add_binary() {
    rootfs_add_file "$1" "$2"
    # "libx.so => /path (0x...)", "/lib64/ld-linux-x86-64.so.2 (0x...)"; not linux-vdso.
    libs=$(ldd "$2" | awk '
        $2 == "=>" && $3 ~ /^\// { print $3; next }
        $1 ~ /^\// { print $1 }')
    if [ -z "$libs" ]; then
        echo "rootfs.sh: ldd listed no libraries for $2" >&2
        return 1
    fi
    for l in $libs; do rootfs_add_file "$1" "$l"; done
}
