#!/usr/bin/env bash
# Runs inside the test VM, as root, chrooted into the host's root (read-only)
# with proc, sys, dev, debugfs, /tmp and /run mounted and the results
# directory writable at its host path (see init).  Runs ion_vm_test, then
# judges the kernel log, and closes results.txt with "END <exit status>";
# the host takes a results.txt without END for a run that did not finish.
set -euo pipefail

results=$IONVM_RESULTS_DIR
# Signs of a kernel problem.  "Tainted:" only with D (died) or W (warned):
# out-of-tree and unsigned modules (O, E) are expected here.  x86/PAT
# "req ... got ...": a mapping silently given another caching mode than the
# driver asked for (write-combined uncached buffers mapped write-back).
bad='WARNING:|BUG:|Oops|general protection fault|Call Trace|kernel BUG|UBSAN|KASAN|refcount_t:|list_del corruption|Tainted: ([A-Z ]*[DW]|.*\[[DW]\]=)|x86/PAT: .*req .*got '
benign='loading out-of-tree module taints kernel|module verification failed'

# Marks where the tests start for whoever reads dmesg.txt.
echo "ionvm: starting ion_vm_test" >/dev/kmsg
status=0
# ion_vm_test loads and unloads the ion modules itself.  The timeout leaves
# the kernel-log check and END to a run that hangs in user space.
# Line-buffered, so that gtest.log has all the output of a crash or panic.
timeout -k 10 "$IONVM_GUEST_TIMEOUT" stdbuf -oL -eL env \
    ION_VM_MODULE_DIR="$ION_VM_MODULE_DIR" \
    ION_VM_RESULTS="$results/results.txt" \
    ION_VM_EXPECT_VGEM="$ION_VM_EXPECT_VGEM" \
    "$IONVM_TEST_BINARY" >"$results/gtest.log" 2>&1 || status=$?
echo "ionvm: ion_vm_test exited with status $status" >/dev/kmsg

dmesg >"$results/dmesg.txt"
if grep -E "$bad" "$results/dmesg.txt" | grep -qvE "$benign"; then
    # With context: the lines after a WARNING are its backtrace.
    grep -E -B 3 -A 30 "$bad" "$results/dmesg.txt" | head -n 400 >"$results/kernel-log-problems.txt"
    echo "FAIL KernelLog.HasNoWarningsBugsOrOopses" >>"$results/results.txt"
else
    echo "PASS KernelLog.HasNoWarningsBugsOrOopses" >>"$results/results.txt"
fi
echo "END $status" >>"$results/results.txt"
sync
