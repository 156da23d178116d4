# Generates a C++ source holding every migrations/sqlite/NNN_*.sql
# (retention.db), migrations/sqlite/archive/NNN_*.sql (archive.db) and
# migrations/postgresql/NNN_*.sql file as a string, so the binary carries its
# schemas. Run at build time by lib/store.
# Inputs: MIGRATIONS_DIR (the sqlite one), PG_MIGRATIONS_DIR, OUTPUT.
function(embed_list dir out_var)
  file(GLOB files "${dir}/[0-9][0-9][0-9]_*.sql")
  list(SORT files)
  set(body "")
  foreach(f IN LISTS files)
    get_filename_component(name "${f}" NAME)
    string(SUBSTRING "${name}" 0 3 num)
    math(EXPR version "${num}")
    file(READ "${f}" sql)
    string(APPEND body "    {${version}, \"${name}\", R\"retentiond_sql(${sql})retentiond_sql\"},\n")
  endforeach()
  set(${out_var} "${body}" PARENT_SCOPE)
endfunction()

embed_list("${MIGRATIONS_DIR}" main_body)
embed_list("${MIGRATIONS_DIR}/archive" archive_body)
embed_list("${PG_MIGRATIONS_DIR}" pg_body)
file(WRITE "${OUTPUT}.tmp" "// Generated from migrations/ by cmake/embed_migrations.cmake. Do not edit.
#include \"lib/store/migrations.hpp\"

namespace retentiond::store {

const std::vector<Migration>& embedded_migrations() {
  static const std::vector<Migration> k_migrations = {
${main_body}  };
  return k_migrations;
}

const std::vector<Migration>& embedded_archive_migrations() {
  static const std::vector<Migration> k_migrations = {
${archive_body}  };
  return k_migrations;
}

const std::vector<Migration>& embedded_postgresql_migrations() {
  static const std::vector<Migration> k_migrations = {
${pg_body}  };
  return k_migrations;
}

}  // namespace retentiond::store
")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)
