/*
 * /set-file-caps FILE: gives FILE the capabilities named in the environment variable
 * FILE_CAPABILITIES (names as in capabilities(7), separated by spaces or commas, e.g.
 * "cap_chown cap_dac_read_search") in its permitted and effective sets, like
 * `setcap cap_chown,cap_dac_read_search=ep FILE`; none when it is empty. Then it
 * deletes itself (run it by its absolute path).
 *
 * Why not setcap: Docker's classic builder drops extended attributes, file
 * capabilities included, when it copies a file from one build stage to another, and
 * the runtime stage has neither a shell nor libcap. This runs there once (exec form
 * RUN), needs only glibc, and removes itself so that nothing of it stays in the image.
 */
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/xattr.h>
#include <unistd.h>

/* capabilities(7), in the kernel's numbering (linux/capability.h). */
static const char *const NAMES[] = {
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner",
    "cap_fsetid", "cap_kill", "cap_setgid", "cap_setuid", "cap_setpcap",
    "cap_linux_immutable", "cap_net_bind_service", "cap_net_broadcast",
    "cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner",
    "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace",
    "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice",
    "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod",
    "cap_lease", "cap_audit_write", "cap_audit_control", "cap_setfcap",
    "cap_mac_override", "cap_mac_admin", "cap_syslog", "cap_wake_alarm",
    "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf",
    "cap_checkpoint_restore",
};

int main(int argc, char **argv) {
    if (argc != 2 || argv[0][0] != '/') {
        fprintf(stderr, "usage: /set-file-caps FILE (capabilities in FILE_CAPABILITIES)\n");
        return 2;
    }
    const char *wanted = getenv("FILE_CAPABILITIES");
    char list[1024];
    snprintf(list, sizeof list, "%s", wanted ? wanted : "");
    struct vfs_cap_data data;
    memset(&data, 0, sizeof data);
    int any = 0;
    for (char *name = strtok(list, " ,"); name; name = strtok(NULL, " ,")) {
        unsigned n = 0;
        while (n < sizeof NAMES / sizeof NAMES[0] && strcasecmp(NAMES[n], name) != 0)
            n++;
        if (n == sizeof NAMES / sizeof NAMES[0]) {
            fprintf(stderr, "set-file-caps: unknown capability %s\n", name);
            return 2;
        }
        data.data[n / 32].permitted |= 1u << (n % 32);
        any = 1;
    }
    /* Little-endian on disk; x86-64 and arm64 are little-endian already. */
    data.magic_etc = VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE;
    if (any && setxattr(argv[1], "security.capability", &data, XATTR_CAPS_SZ_2, 0) != 0) {
        perror("set-file-caps: setxattr security.capability");
        return 1;
    }
    if (unlink(argv[0]) != 0) {
        perror("set-file-caps: cannot remove itself");
        return 1;
    }
    return 0;
}
