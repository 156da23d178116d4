# ctest bench_quick: runs retentiond-bench in its quick mode, then checks that
# the run completed and wrote a JSON report with every phase and a full table.
# Timings are printed, never judged.
#   cmake -DBENCH=<retentiond-bench> -DJSON=<report path> -P check_quick.cmake

file(REMOVE "${JSON}")
execute_process(
  COMMAND "${BENCH}" --records 3000 --batch 500 --startup-records 10000 --startup-runs 2 --json-out "${JSON}"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "retentiond-bench exited with ${rc}")
endif()
if(NOT EXISTS "${JSON}")
  message(FATAL_ERROR "retentiond-bench wrote no report at ${JSON}")
endif()

file(READ "${JSON}" report)
foreach(phase ingest raw_insert purge_sweep_probed purge_sweep raw_delete raw_delete_one_transaction
              anonymise_sweep_probed anonymise_sweep raw_update
              startup)
  string(JSON type ERROR_VARIABLE err TYPE "${report}" phases ${phase})
  if(err OR NOT type STREQUAL "OBJECT")
    message(FATAL_ERROR "report: phases.${phase} missing (${err})")
  endif()
endforeach()
# Every record was swept, in two passes each: 1,500 purged and 1,500
# anonymised.
string(JSON purged_probed GET "${report}" phases purge_sweep_probed records)
string(JSON purged_rest GET "${report}" phases purge_sweep records)
string(JSON anonymised_probed GET "${report}" phases anonymise_sweep_probed records)
string(JSON anonymised_rest GET "${report}" phases anonymise_sweep records)
math(EXPR purged "${purged_probed} + ${purged_rest}")
math(EXPR anonymised "${anonymised_probed} + ${anonymised_rest}")
if(NOT purged EQUAL 1500 OR NOT anonymised EQUAL 1500)
  message(FATAL_ERROR "report: ${purged} purged and ${anonymised} anonymised, expected 1500 each")
endif()
string(JSON rows LENGTH "${report}" table)
if(rows LESS 10)
  message(FATAL_ERROR "report: the table has ${rows} rows")
endif()
string(JSON commit GET "${report}" build git_commit)
message(STATUS "bench_quick: report with ${rows} rows written to ${JSON} (commit ${commit})")
