# ctest bench_quick: runs retentiond-bench in its quick mode, then checks that
# the run completed and wrote a JSON report with every phase, the probes of
# the import, the sweeps and the heavy reads, and a full table with the issue 11 targets.
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
foreach(phase ingest raw_insert wal_insert
              purge_sweep raw_delete raw_delete_one_transaction wal_delete
              anonymise_sweep raw_update wal_update
              heavy_reads startup)
  string(JSON type ERROR_VARIABLE err TYPE "${report}" phases ${phase})
  if(err OR NOT type STREQUAL "OBJECT")
    message(FATAL_ERROR "report: phases.${phase} missing (${err})")
  endif()
endforeach()

# Every record was stored, then swept: 1,500 purged and 1,500 anonymised, by
# the daemon and by each bare-SQLite counterpart.
foreach(check "ingest;3000" "raw_insert;3000" "wal_insert;3000"
              "purge_sweep;1500" "raw_delete;1500" "raw_delete_one_transaction;1500" "wal_delete;1500"
              "anonymise_sweep;1500" "raw_update;1500" "wal_update;1500")
  list(GET check 0 phase)
  list(GET check 1 expected)
  string(JSON n GET "${report}" phases ${phase} records)
  if(NOT n EQUAL expected)
    message(FATAL_ERROR "report: phases.${phase}.records is ${n}, expected ${expected}")
  endif()
endforeach()

# The probed phases have their latency summaries (the counts may be small:
# a quick run's phases last a fraction of a second).
foreach(phase ingest purge_sweep anonymise_sweep heavy_reads)
  foreach(summary status explain admin)
    string(JSON count ERROR_VARIABLE err GET "${report}" phases ${phase} ${summary} count)
    if(err)
      message(FATAL_ERROR "report: phases.${phase}.${summary}.count missing (${err})")
    endif()
  endforeach()
  string(JSON busy ERROR_VARIABLE err GET "${report}" phases ${phase} probe_busy_fraction)
  if(err)
    message(FATAL_ERROR "report: phases.${phase}.probe_busy_fraction missing (${err})")
  endif()
endforeach()

# The table, with every target of issue 11 judged (yes or NO, never absent).
string(JSON rows LENGTH "${report}" table)
if(rows LESS 22)
  message(FATAL_ERROR "report: the table has ${rows} rows")
endif()
set(targets "")
math(EXPR last "${rows} - 1")
foreach(i RANGE ${last})
  string(JSON target GET "${report}" table ${i} target)
  string(JSON met_type TYPE "${report}" table ${i} met)
  if(met_type STREQUAL "BOOLEAN")
    list(APPEND targets "${target}")
  endif()
endforeach()
foreach(target ">= 1.0x WAL INSERT" ">= 0.5x one-statement WAL DELETE" "<= 20 ms, >= 1,000 calls")
  list(FIND targets "${target}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "report: no judged row with the target '${target}'")
  endif()
endforeach()
list(FILTER targets INCLUDE REGEX "^<= 20 ms")
list(LENGTH targets latency_rows)
if(NOT latency_rows EQUAL 4)
  message(FATAL_ERROR "report: ${latency_rows} latency targets, expected 4 (import, purge and anonymise sweeps, heavy reads)")
endif()

# The heavy reads ran whole loops, each over the chain the sweeps wrote:
# every record has its one audit entry.
string(JSON loops GET "${report}" phases heavy_reads loops)
string(JSON entries GET "${report}" phases heavy_reads audit_entries)
if(loops LESS 2 OR NOT entries EQUAL 3000)
  message(FATAL_ERROR "report: heavy_reads ran ${loops} loops over ${entries} audit entries, expected >= 2 over 3000")
endif()

string(JSON commit GET "${report}" build git_commit)
message(STATUS "bench_quick: report with ${rows} rows written to ${JSON} (commit ${commit})")
