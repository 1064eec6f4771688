#!/usr/bin/env bash
# One ctest test's verdict from a VM run's results directory (see vm.sh):
#   check-result.sh RESULTS_DIR Suite.Test     what ion_vm_test said of the test
#   check-result.sh RESULTS_DIR --exit-status  how ion_vm_test itself ended
# Exit 0 for PASS, 1 for FAIL or no result, 77 (ctest SKIP_RETURN_CODE) for SKIP.
set -euo pipefail

results=$1 test=$2
file=$results/results.txt
log=$results/gtest.log

if [[ ! -f $file ]]; then
    echo "no $file: the VM run (the matching .boot test) did not produce results"
    exit 1
fi
end=$(sed -n 's/^END //p' "$file" | tail -n 1)

# How ion_vm_test ended, in words.
ending() {
    if [[ -z $end ]]; then
        echo "the VM run did not finish (no END in $file)"
    elif ((end == 124 || end == 137)); then
        echo "ion_vm_test was stopped by the guest's timeout (hung?), status $end"
    elif ((end > 128)); then
        echo "ion_vm_test was killed by signal $((end - 128)) (SIG$(kill -l "$((end - 128))" 2>/dev/null || echo '?'))"
    else
        echo "ion_vm_test exited with status $end"
    fi
}

# The lines of gtest.log from "[ RUN      ] $1" up to its result line, or to
# the end of the log if there is none.
section() {
    awk -v t="$1" '
        !on && $0 == "[ RUN      ] " t { on = 1 }
        on { print }
        # "[  FAILED  ] Inst/Suite.Test/0, where GetParam() = ..." has a comma.
        on && /^\[ +(OK|FAILED|SKIPPED) +\] / && ($4 == t || $4 == t ",") { exit }
    ' "$log" 2>/dev/null
}

if [[ $test == --exit-status ]]; then
    # gtest exits 1 when a test failed; those failures have their own tests.
    if [[ -n $end ]] && { ((end == 0)) || { ((end == 1)) && grep -q '^FAIL ' "$file"; }; }; then
        ending
        exit 0
    fi
    ending
    ((end != 1)) || echo "but no test reported FAIL"
    echo "--- end of $log:"
    tail -n 30 "$log" 2>/dev/null || echo "(no $log)"
    exit 1
fi

# A test that ran twice (--gtest_repeat) fails if it failed once.
verdict=$(awk -v t="$test" '
    $2 == t { v[$1] = 1; if ($1 == "SKIP") { r = $0; sub(/^SKIP +[^ ]+ */, "", r) } }
    END { if (v["FAIL"]) print "FAIL"; else if (v["PASS"]) print "PASS"; else if (v["SKIP"]) print "SKIP " r }
' "$file")

case $verdict in
    PASS)
        exit 0
        ;;
    SKIP*)
        reason=${verdict#SKIP }
        echo "skipped in the VM: ${reason:-(no reason given)}"
        exit 77
        ;;
    FAIL)
        if [[ $test == KernelLog.* ]]; then
            echo "the kernel log has warnings, bugs or oopses (whole log: $results/dmesg.txt):"
            cat "$results/kernel-log-problems.txt"
        else
            echo "failed in the VM (whole log: $log):"
            section "$test"
        fi
        exit 1
        ;;
esac

# No verdict: the test started and never ended, or never started.
if [[ -n $(section "$test") ]]; then
    echo "started in the VM but never finished (crashed or hung?); $(ending):"
    section "$test"
else
    # The last test that started is the one that took ion_vm_test down,
    # unless it has a verdict: then whatever came after it did.
    where=''
    last=$(sed -n 's/^\[ RUN      \] //p' "$log" 2>/dev/null | tail -n 1)
    if [[ -n $last ]]; then
        where=", during $last"
        if awk -v t="$last" '$2 == t { found = 1 } END { exit !found }' "$file"; then
            where=", after $last"
        fi
    fi
    echo "did not run in the VM (crashed or hung?); $(ending)$where"
    if [[ -z $last ]]; then
        # No test started: the log says why (a missing library, say).
        echo "--- end of $log:"
        tail -n 10 "$log" 2>/dev/null || echo "(no $log)"
    else
        echo "(whole log: $log)"
    fi
fi
exit 1
