# Installs the built library into a scratch prefix, configures and builds samples/consumer against
# it with find_package(tdhook), and runs the result on a notification signed by the library.
# cmake -DSOURCE_DIR=… -DBINARY_DIR=… -DWORK_DIR=… -P install_consumer.cmake
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(last_output "${out}" PARENT_SCOPE)
endfunction()
run(${CMAKE_COMMAND} --install "${BINARY_DIR}" --prefix "${WORK_DIR}/prefix")
run(${CMAKE_COMMAND} -S "${SOURCE_DIR}/samples/consumer" -B "${WORK_DIR}/build"
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --build "${WORK_DIR}/build")
# Sign a lead.create with the freshly built tool, then let the consumer verify and read it.
file(WRITE "${WORK_DIR}/secret" "0b5e3f0e-1111-4222-8333-444455556666\n")
run("${BINARY_DIR}/tools/tdhook" sign --sample lead.create --secret-file "${WORK_DIR}/secret")
file(WRITE "${WORK_DIR}/body.json" "${last_output}")
execute_process(COMMAND ${CMAKE_COMMAND} -E env TDHOOK_SECRET=0b5e3f0e-1111-4222-8333-444455556666
  "${WORK_DIR}/build/consumer" INPUT_FILE "${WORK_DIR}/body.json"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "lead.create ada.lovelace@example.org")
  message(FATAL_ERROR "consumer failed (${rc}): ${out} ${err}")
endif()
