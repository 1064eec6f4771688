# CPack runs this on the staged tree before it builds the package: every man
# page becomes <page>.gz, compressed with gzip -9n as Debian's policy asks
# (-n: no name or time stamp inside, so that rebuilds are identical).
file(GLOB_RECURSE ionsvc_man_pages "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/usr/share/man/man*/*")
foreach(page IN LISTS ionsvc_man_pages)
    if(NOT page MATCHES "\\.gz$")
        execute_process(COMMAND gzip -9n "${page}" RESULT_VARIABLE status)
        if(NOT status EQUAL 0)
            message(FATAL_ERROR "gzip -9n ${page} failed: ${status}")
        endif()
    endif()
endforeach()
