// SPDX-License-Identifier: MIT
// How the in-VM test binaries tell the host what happened: one line per
// finished test in a results file that the harness reads after the VM is
// gone (check-result.sh).
#pragma once

namespace ionsvc::vmtest {

// Appends "PASS|FAIL|SKIP <Suite>.<Test>[ reason]" to path for every test
// that ends, from now on. Each line is one write(2), so what was written
// survives a test that takes the VM down with it; path may be a file or a
// serial port. No path (null or empty): reports nothing, returns true.
// false (after saying why on stderr, as program) if path cannot be opened.
bool report_results_to(const char *path, const char *program);

} // namespace ionsvc::vmtest
