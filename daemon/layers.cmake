# The daemon's layers, and the check that keeps them true (run by ctest:
# unit.DaemonLayers.*). A folder may include its own headers and those of
# the folders below it, never one above:
#
#   main.cpp    start-up, config reload, the event loop's life
#   server/     Asio: listening socket, sessions, fd passing, watchdog
#   protocol/   Service: requests in, replies out; -errno becomes a status here
#   policy/     config file, quotas, access rules, share tokens
#   books/      who holds what: clients, buffers, orphans, release detection; warm pool
#   backends/   heaps: memfd, ion, dma-heap, udmabuf; the allocator, names and aliases
#   syscalls/   the kernel calls behind a seam that unit tests fault
#
# Daemon headers are included by their folder ("books/books.h"), so that
# a reader sees the layer at the include. Besides the order:
#   - the wire format (buffer.pb.h) stays at the border: protocol/ and up,
#     as does the state kept across a restart (recovery.pb.h);
#   - Boost.Asio (sockets, the loop) is server/'s and main.cpp's alone;
#   - the ION uapi (kernel/uapi/ion.h) is the ion backend's business;
#   - libbufclient is the clients' library: the daemon never includes it;
#   - every source is in a layer's folder, except main.cpp.
#
#   cmake -DROOT=<daemon folder> -P layers.cmake       checks the daemon
#   cmake -DSELF_TEST=<scratch folder> -P layers.cmake checks the check

set(ionsvc_layers syscalls backends books policy protocol server)
string(REPLACE ";" ", " ionsvc_layer_names "${ionsvc_layers}")

# The rank of the folder a path (relative to the root) is in; main.cpp
# is above every folder. -1: not in a layer.
function(ionsvc_layer_rank path out)
    if(path STREQUAL "main.cpp")
        list(LENGTH ionsvc_layers rank)
    else()
        string(REGEX MATCH "^[^/]+" folder "${path}")
        list(FIND ionsvc_layers "${folder}" rank)
        if(path STREQUAL folder)
            set(rank -1) # a file straight in the root
        endif()
    endif()
    set(${out} ${rank} PARENT_SCOPE)
endfunction()

# What is wrong with one include line of the file at path (of rank rank),
# or nothing.
function(ionsvc_include_problem path rank line out)
    set(problem "")
    if(line MATCHES "#[ \t]*include[ \t]*\"([^\"]+)\"")
        set(target "${CMAKE_MATCH_1}")
        string(REGEX MATCH "^[^/]+" folder "${target}")
        list(FIND ionsvc_layers "${folder}" target_rank)
        if(NOT target STREQUAL folder AND target_rank GREATER -1)
            if(target_rank GREATER rank)
                set(problem "includes \"${target}\": ${folder}/ is a layer above it")
            endif()
        elseif(target STREQUAL "buffer.pb.h" OR target STREQUAL "recovery.pb.h")
            list(FIND ionsvc_layers protocol protocol_rank)
            if(rank LESS protocol_rank)
                set(problem "includes the wire format (${target}): only protocol/ and above speak it")
            endif()
        elseif(target STREQUAL "kernel/uapi/ion.h")
            if(NOT path MATCHES "^backends/")
                set(problem "includes the ION uapi: only backends/ talks to /dev/ion")
            endif()
        else()
            set(problem "includes \"${target}\": name a daemon header by its folder (\"books/books.h\")")
        endif()
    elseif(line MATCHES "#[ \t]*include[ \t]*<(boost/asio[^>]*)>")
        set(target "${CMAKE_MATCH_1}")
        if(NOT path MATCHES "^(server/|main\\.cpp$)")
            set(problem "includes <${target}>: sockets and the event loop are server/'s")
        endif()
    elseif(line MATCHES "#[ \t]*include[ \t]*<(bufclient/[^>]*)>")
        set(problem "includes <${CMAKE_MATCH_1}>: libbufclient is the clients' library")
    endif()
    set(${out} "${problem}" PARENT_SCOPE)
endfunction()

# Every problem of the sources under root, one "path:line: problem" each.
function(ionsvc_check_layers root out)
    file(GLOB_RECURSE sources RELATIVE "${root}" "${root}/*.h" "${root}/*.cpp")
    list(SORT sources)
    set(problems "")
    foreach(path IN LISTS sources)
        ionsvc_layer_rank("${path}" rank)
        if(rank EQUAL -1)
            list(APPEND problems "${path}: not in a layer's folder (${ionsvc_layer_names}), and only main.cpp stands alone")
            continue()
        endif()
        file(STRINGS "${root}/${path}" lines)
        set(number 0)
        foreach(line IN LISTS lines)
            math(EXPR number "${number} + 1")
            if(NOT line MATCHES "^[ \t]*#[ \t]*include")
                continue()
            endif()
            ionsvc_include_problem("${path}" ${rank} "${line}" problem)
            if(problem)
                list(APPEND problems "${path}:${number}: ${problem}")
            endif()
        endforeach()
    endforeach()
    set(${out} "${problems}" PARENT_SCOPE)
endfunction()

if(SELF_TEST)
    # A small tree with one mistake of each kind, and one include of each
    # kind that is fine.
    file(REMOVE_RECURSE "${SELF_TEST}")
    file(WRITE "${SELF_TEST}/main.cpp" "#include \"server/server.h\"\n#include <boost/asio/io_context.hpp>\n")
    file(WRITE "${SELF_TEST}/server/server.h" "#include \"protocol/service.h\"\n#include <boost/asio/post.hpp>\n")
    file(WRITE "${SELF_TEST}/protocol/service.h" "#include \"buffer.pb.h\"\n#include \"books/books.h\"\n")
    file(WRITE "${SELF_TEST}/books/books.h" "#include \"backends/heap.h\"\n#include <ionsvc/unique_fd.h>\n")
    file(WRITE "${SELF_TEST}/backends/ion.cpp" "#include \"kernel/uapi/ion.h\"\n#include \"syscalls/syscalls.h\"\n")
    file(WRITE "${SELF_TEST}/backends/memfd.cpp" "// SPDX\n#include \"backends/heap.h\"\n  #  include \"books/books.h\"\n")
    file(WRITE "${SELF_TEST}/books/warm_pool.cpp" "#include \"buffer.pb.h\"\n#include \"heap.h\"\n")
    file(WRITE "${SELF_TEST}/syscalls/syscalls.cpp" "#include <boost/asio/io_context.hpp>\n#include \"kernel/uapi/ion.h\"\n")
    file(WRITE "${SELF_TEST}/policy/quota.cpp" "#include <bufclient/bufclient.h>\n#include \"server/guard.h\"\n")
    file(WRITE "${SELF_TEST}/stray.cpp" "\n")
    ionsvc_check_layers("${SELF_TEST}" problems)
    set(expected
        "backends/memfd.cpp:3: includes \"books/books.h\": books/ is a layer above it"
        "books/warm_pool.cpp:1: includes the wire format (buffer.pb.h): only protocol/ and above speak it"
        "books/warm_pool.cpp:2: includes \"heap.h\": name a daemon header by its folder (\"books/books.h\")"
        "policy/quota.cpp:1: includes <bufclient/bufclient.h>: libbufclient is the clients' library"
        "policy/quota.cpp:2: includes \"server/guard.h\": server/ is a layer above it"
        "stray.cpp: not in a layer's folder (${ionsvc_layer_names}), and only main.cpp stands alone"
        "syscalls/syscalls.cpp:1: includes <boost/asio/io_context.hpp>: sockets and the event loop are server/'s"
        "syscalls/syscalls.cpp:2: includes the ION uapi: only backends/ talks to /dev/ion")
    if(NOT problems STREQUAL expected)
        string(REPLACE ";" "\n  " found "${problems}")
        string(REPLACE ";" "\n  " wanted "${expected}")
        message(FATAL_ERROR "the layer check found:\n  ${found}\nbut should have found:\n  ${wanted}")
    endif()
    message(STATUS "the layer check finds each of the ${SELF_TEST} tree's 8 mistakes, and nothing else")
elseif(ROOT)
    ionsvc_check_layers("${ROOT}" problems)
    if(problems)
        list(LENGTH problems count)
        string(REPLACE ";" "\n  " listing "${problems}")
        message(FATAL_ERROR "${count} includes break the daemon's layers (daemon/layers.cmake says "
            "which folder may include which):\n  ${listing}")
    endif()
    message(STATUS "every include under ${ROOT} keeps to the layers: ${ionsvc_layer_names} and main.cpp")
else()
    message(FATAL_ERROR "usage: cmake -DROOT=<daemon folder> -P layers.cmake, or -DSELF_TEST=<scratch folder>")
endif()
