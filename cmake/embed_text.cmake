# Turns a text file (a web page) into a C++ source defining `const char* <SYMBOL>()`, so the
# binaries carry their pages and nothing is read from disk at run time.
# cmake -DINPUT=page.html -DOUTPUT=page.cpp -DSYMBOL=kg::web::parents_page -P embed_text.cmake
file(READ "${INPUT}" content)
string(FIND "${content}" ")KGEMBED\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )KGEMBED\"")
endif()
string(REGEX MATCH "^(.*)::([^:]+)$" _ "${SYMBOL}")
set(ns "${CMAKE_MATCH_1}")
set(fn "${CMAKE_MATCH_2}")
# MSVC-style limits do not apply to GCC; one literal is fine for pages of a few hundred KiB.
file(WRITE "${OUTPUT}.tmp" "// Generated from ${INPUT} by cmake/embed_text.cmake; do not edit.\nnamespace ${ns} {\nconst char* ${fn}() {\n    return R\"KGEMBED(${content})KGEMBED\";\n}\n}  // namespace ${ns}\n")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUTPUT}.tmp")
