#include "lib/vault/vault.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "lib/crypto/crypto.hpp"

namespace retentiond::vault {

namespace {

constexpr const char* kStaleKey = "stale_key";
constexpr int kReadAttempts = 4;
constexpr std::size_t kKeyPoolBytes = 256 * KeyStore::kSlotBytes;

// Calls `run(first, count)` for each run of consecutive numbers in the
// sorted `slots`.
template <typename Run>
void for_each_run(const std::vector<std::int64_t>& slots, Run run) {
  std::size_t i = 0;
  while (i < slots.size()) {
    std::size_t j = i + 1;
    while (j < slots.size() && slots[j] == slots[j - 1] + 1) ++j;
    run(slots[i], j - i);
    i = j;
  }
}

// A record's sealed plaintext: {"fields": ..., "subject": ...}.
std::string record_plaintext(const Record& r) {
  std::string out = "{\"fields\":";
  out += r.fields.dump();
  out += ",\"subject\":";
  out += r.subject ? nlohmann::json(*r.subject).dump() : std::string("null");
  out += '}';
  return out;
}

}  // namespace

std::string record_aad(std::string_view key) { return "record\n" + std::string(key); }
std::string hold_aad(std::string_view scope) { return "hold\n" + std::string(scope); }
std::string job_aad(std::string_view id) { return "job\n" + std::string(id); }

// ---------------------------------------------------------------- reading

RecordReader::RecordReader(store::StoreReader& store, const KeyStore& keys, std::string secret)
    : m_keys(keys), m_secret(std::move(secret)), m_reader(store) {}

std::string RecordReader::keyed_hash(std::string_view data) const { return crypto::hmac_sha256_hex(m_secret, data); }

Status RecordReader::read(const std::function<Status()>& work) {
  if (m_depth > 0) return work();
  Status st;
  for (int attempt = 1;; ++attempt) {
    ++m_depth;
    st = m_reader.read(work);
    --m_depth;
    if (st || st.error().reason != kStaleKey) return st;
    if (attempt == kReadAttempts) break;
  }
  Error e = std::move(st).error();
  e.reason = "storage_error";
  e.message += " (in " + std::to_string(kReadAttempts) + " snapshots in a row: damaged or tampered with)";
  return e;
}

Result<std::string> RecordReader::key_of(std::int64_t slot) const { return m_keys.read(slot); }

Result<std::string> RecordReader::open(const store::Sealed& sealed, std::string_view aad) const {
  const auto stale = [&](const std::string& why) {
    // A reader's snapshot may name a slot that a later commit released and
    // zeroed, or reused under a new key: retried on a fresh snapshot. For
    // the writer it is damage.
    Error e = Error::storage("sealed data in key slot " + std::to_string(sealed.slot) + " does not open: " + why);
    if (retries_stale_keys()) e.reason = kStaleKey;
    return e;
  };
  auto key = key_of(sealed.slot);
  if (!key) return stale("its key is gone");
  auto plain = crypto::open_sealed(*key, aad, sealed.bytes);
  if (!plain) return stale("damaged or tampered with");
  return std::move(*plain);
}

Record RecordReader::without_values(store::StoredRecord&& row) {
  Record r;
  static_cast<store::Schedule&>(r) = std::move(static_cast<store::Schedule&>(row));
  r.has_values = false;
  return r;
}

Result<Record> RecordReader::open_record(store::StoredRecord&& row) const {
  auto plain = open(row.sealed, record_aad(row.key));
  if (!plain) return std::move(plain).error();
  Record r = without_values(std::move(row));
  try {
    const auto j = nlohmann::json::parse(*plain);
    if (const auto s = j.find("subject"); s != j.end() && s->is_string()) r.subject = s->get<std::string>();
    r.fields = j.at("fields");
  } catch (const std::exception& e) {
    return Error::storage("sealed data of record '" + r.key + "' is not a record: " + e.what());
  }
  r.has_values = true;
  return r;
}

Result<std::vector<Record>> RecordReader::schedules_of(Result<std::vector<store::StoredRecord>> rows) {
  if (!rows) return std::move(rows).error();
  std::vector<Record> out;
  out.reserve(rows->size());
  for (auto& row : *rows) out.push_back(without_values(std::move(row)));
  return out;
}

Result<std::optional<Record>> RecordReader::get(const std::string& key) {
  std::optional<Record> out;
  Status st = read([&]() -> Status {
    auto row = m_reader.get(key);
    if (!row) return std::move(row).error();
    out.reset();
    if (!*row) return {};
    auto r = open_record(std::move(**row));
    if (!r) return std::move(r).error();
    out = std::move(*r);
    return {};
  });
  if (!st) return std::move(st).error();
  return out;
}

Result<std::optional<Record>> RecordReader::schedule_of(const std::string& key) {
  auto row = m_reader.schedule_of(key);
  if (!row) return std::move(row).error();
  if (!*row) return std::optional<Record>{};
  return std::optional<Record>{without_values(std::move(**row))};
}

Result<std::vector<Record>> RecordReader::due(calendar::Instant now, std::size_t limit,
                                              const std::optional<store::StoreReader::DueCursor>& after) {
  return schedules_of(m_reader.due(now, limit, after));
}

Result<std::vector<Record>> RecordReader::undue(std::size_t limit, const std::string& after_key) {
  return schedules_of(m_reader.undue(limit, after_key));
}

Result<std::vector<Record>> RecordReader::schedules(const std::string& category, std::size_t limit,
                                                    const std::string& after_key) {
  return schedules_of(m_reader.schedules(category, limit, after_key));
}

Result<std::vector<Record>> RecordReader::by_subject(const std::string& subject) {
  const std::string ref = subject_ref(subject);
  std::vector<Record> out;
  Status st = read([&]() -> Status {
    out.clear();
    auto rows = m_reader.by_subject_ref(ref);
    if (!rows) return std::move(rows).error();
    for (auto& row : *rows) {
      auto r = open_record(std::move(row));
      if (!r) return std::move(r).error();
      out.push_back(std::move(*r));
    }
    return {};
  });
  if (!st) return std::move(st).error();
  return out;
}

Result<std::vector<Record>> RecordReader::subject_schedules(const std::string& subject) {
  return schedules_of(m_reader.by_subject_ref(subject_ref(subject)));
}

Result<std::optional<RecordReader::Retired>> RecordReader::retired(const std::string& key) {
  std::optional<Retired> out;
  Status st = read([&]() -> Status {
    out.reset();
    auto row = m_reader.retired(key);
    if (!row) return std::move(row).error();
    if (!*row) return {};
    auto record = open_record(std::move((*row)->record));
    if (!record) return std::move(record).error();
    out = Retired{std::move(*record), (*row)->purged_at, (*row)->destroy_at};
    return {};
  });
  if (!st) return std::move(st).error();
  return out;
}

Result<std::vector<Hold>> RecordReader::holds() {
  std::vector<Hold> out;
  Status st = read([&]() -> Status {
    out.clear();
    auto rows = m_reader.holds();
    if (!rows) return std::move(rows).error();
    for (auto& h : *rows) {
      auto target = open(h.target, hold_aad(h.scope));
      if (!target) return std::move(target).error();
      out.push_back(Hold{h.id, h.scope, std::move(*target), h.reason, h.placed_at, h.placed_by});
    }
    return {};
  });
  if (!st) return std::move(st).error();
  return out;
}

Result<std::vector<Job>> RecordReader::open_jobs(const std::function<Result<std::vector<store::StoredJob>>()>& query) {
  std::vector<Job> out;
  Status st = read([&]() -> Status {
    out.clear();
    auto rows = query();
    if (!rows) return std::move(rows).error();
    for (auto& row : *rows) {
      Job job;
      if (row.subject.slot >= 0) {
        auto subject = open(row.subject, job_aad(row.id));
        if (!subject) return std::move(subject).error();
        job.subject = std::move(*subject);
      }
      row.subject = store::Sealed{};
      job.row = std::move(row);
      out.push_back(std::move(job));
    }
    return {};
  });
  if (!st) return std::move(st).error();
  return out;
}

Result<std::optional<Job>> RecordReader::job(const std::string& id) {
  auto jobs = open_jobs([&]() -> Result<std::vector<store::StoredJob>> {
    auto row = m_reader.job(id);
    if (!row) return std::move(row).error();
    std::vector<store::StoredJob> out;
    if (*row) out.push_back(std::move(**row));
    return out;
  });
  if (!jobs) return std::move(jobs).error();
  if (jobs->empty()) return std::optional<Job>{};
  return std::optional<Job>{std::move(jobs->front())};
}

Result<std::vector<Job>> RecordReader::jobs(const std::string& connector, store::JobState state, std::size_t limit,
                                            std::int64_t after_seq) {
  return open_jobs([&]() { return m_reader.jobs(connector, state, limit, after_seq); });
}

Result<std::vector<Job>> RecordReader::jobs_ready(const std::string& connector, store::JobState state,
                                                  calendar::Instant now, std::size_t limit) {
  return open_jobs([&]() { return m_reader.jobs_ready(connector, state, now, limit); });
}

// ---------------------------------------------------------------- writing

Vault::Vault(store::Store& store, KeyStore& keys, std::string secret)
    : RecordReader(store, keys, std::move(secret)), m_store(store), m_writable_keys(keys) {}

Status Vault::open() {
  auto state = m_store.key_slots();
  if (!state) return std::move(state).error();
  m_shared = m_store.shared();
  m_next_slot = state->next_slot;
  m_free.clear();
  if (!m_shared) {
    for (auto& list : state->free) m_free.push_back(FreeList{list.id, std::move(list.slots), false});
  }
  // Slots a crash left released but not known to be zeroed: zeroed now; the
  // transaction below records them zeroed, which frees them.
  if (!state->unzeroed.empty()) {
    for (const auto& list : state->unzeroed) {
      for (const auto slot : list.slots) {
        if (auto st = m_writable_keys.zero_run(slot, 1); !st) return st;
      }
    }
    if (auto st = m_writable_keys.sync(); !st) return st;
    m_zeroed = std::move(state->unzeroed);
    if (auto st = transaction([] { return Status{}; }); !st) return st;
  }
  // Values kept in clear by a database from before schema 004: sealed once.
  auto legacy = m_store.legacy_plaintext();
  if (!legacy) return std::move(legacy).error();
  if (legacy->present) {
    Status st = transaction([&]() -> Status {
      std::vector<store::StoredRecord> rows;
      for (const auto& p : legacy->rows) {
        Record r;
        r.key = p.key;
        r.location = p.location;
        r.subject = p.subject;
        try {
          r.fields = nlohmann::json::parse(p.fields_json);
        } catch (const std::exception& e) {
          return Error::storage("record '" + p.key + "' kept in clear has unreadable fields: " + e.what());
        }
        rows.push_back(seal_record(r));
      }
      std::vector<store::StoredHold> holds;
      for (const auto& h : legacy->holds) {
        holds.push_back(store::StoredHold{h.id, h.scope, seal(hold_aad(h.scope), h.target), h.reason, h.placed_at,
                                          h.placed_by});
      }
      return m_store.replace_legacy_plaintext(rows, holds);
    });
    if (!st) return st;
    if (!legacy->rows.empty() || !legacy->holds.empty()) {
      spdlog::info("vault.sealed_legacy records={} holds={} (values kept in clear before schema 004)",
                   legacy->rows.size(), legacy->holds.size());
    }
  }
  return m_store.scrub_after_upgrade();
}

std::string Vault::fresh_key() {
  if (m_pool_at + KeyStore::kSlotBytes > m_key_pool.size()) {
    m_key_pool = crypto::random_bytes(kKeyPoolBytes);
    m_pool_at = 0;
  }
  std::string key = m_key_pool.substr(m_pool_at, KeyStore::kSlotBytes);
  // The pool never hands out the same bytes twice, nor keeps them.
  std::fill_n(m_key_pool.begin() + static_cast<std::ptrdiff_t>(m_pool_at), KeyStore::kSlotBytes, '\0');
  m_pool_at += KeyStore::kSlotBytes;
  return key;
}

// Slots reserved at a time from a shared store.
constexpr std::int64_t kSlotBlock = 1024;

// A free slot (the most recently freed list first) or a never-used one; with
// a shared store, the next of this daemon's reserved block.
std::int64_t Vault::allocate_slot() {
  if (m_shared) {
    if (m_block_next == m_block_end) {
      auto first = m_store.reserve_slot_block(kSlotBlock);
      // Inside a transaction: the store turns the exception into its failure.
      if (!first) throw std::runtime_error(first.error().message);
      m_block_next = *first;
      m_block_end = *first + kSlotBlock;
    }
    return m_block_next++;
  }
  for (std::size_t i = m_free.size(); i-- > 0;) {
    auto& list = m_free[i];
    if (list.slots.empty()) continue;
    const std::int64_t slot = list.slots.back();
    list.slots.pop_back();
    list.dirty = true;
    m_taken.emplace_back(i, slot);
    return slot;
  }
  return m_next_slot++;
}

store::Sealed Vault::seal(std::string_view aad, std::string_view plaintext) {
  const std::int64_t slot = allocate_slot();
  std::string key = fresh_key();
  store::Sealed out{slot, crypto::seal_once(key, aad, plaintext)};
  m_new_keys[slot] = std::move(key);
  return out;
}

store::StoredRecord Vault::seal_record(const Record& r) {
  store::StoredRecord row;
  static_cast<store::Schedule&>(row) = r;
  row.subject_ref = r.subject ? std::optional<std::string>(subject_ref(*r.subject)) : std::nullopt;
  row.sealed = seal(record_aad(r.key), record_plaintext(r));
  return row;
}

Result<std::string> Vault::key_of(std::int64_t slot) const {
  if (const auto it = m_new_keys.find(slot); it != m_new_keys.end()) return it->second;
  return m_keys.read(slot);
}

Status Vault::transaction(const std::function<Status()>& work) {
  if (m_in_tx) return Error::internal("Vault::transaction is not reentrant");
  m_in_tx = true;
  const std::int64_t next_slot_before = m_next_slot;
  const std::vector<store::SlotList> marking = m_zeroed;
  std::optional<std::int64_t> released_list;
  Status result = m_store.transaction([&]() -> Status {
    if (auto st = work(); !st) return st;
    store::KeySlotChanges changes;
    for (const auto& list : marking) {
      // A shared store never reuses a slot: a zeroed list is done with.
      if (m_shared) changes.taken_from.push_back(store::SlotList{list.id, {}});
      else changes.now_zeroed.push_back(list.id);
    }
    for (const auto& list : m_free) {
      if (list.dirty) changes.taken_from.push_back(store::SlotList{list.id, list.slots});
    }
    if (m_next_slot != next_slot_before) changes.next_slot = m_next_slot;
    std::sort(m_released.begin(), m_released.end());
    m_released.erase(std::unique(m_released.begin(), m_released.end()), m_released.end());
    changes.released = m_released;
    auto id = m_store.save_key_slots(changes);
    if (!id) return std::move(id).error();
    released_list = *id;
    // The keys of the rows this transaction sealed, durable before the
    // commit that makes the rows visible.
    try {
      write_new_keys();
    } catch (const std::exception& e) {
      return Error::storage(std::string("cannot write keys: ") + e.what() + "; nothing was changed");
    }
    return {};
  });
  m_in_tx = false;
  if (!result) {
    // Nothing of the transaction stays: its keys and its slot bookkeeping.
    if (m_keys_written) {
      for (const auto& [slot, key] : m_new_keys) (void)m_writable_keys.zero_run(slot, 1);  // best effort: nothing names them
      (void)m_writable_keys.sync();
    }
    for (auto it = m_taken.rbegin(); it != m_taken.rend(); ++it) m_free[it->first].slots.push_back(it->second);
    m_next_slot = next_slot_before;
    forget_transaction();
    return result;
  }
  std::erase_if(m_free, [](const FreeList& l) { return l.slots.empty(); });
  if (!m_shared) {
    for (const auto& list : marking) m_free.push_back(FreeList{list.id, list.slots, false});
  }
  m_zeroed.erase(m_zeroed.begin(), m_zeroed.begin() + static_cast<std::ptrdiff_t>(marking.size()));
  if (released_list) m_to_zero.push_back(store::SlotList{*released_list, m_released});
  forget_transaction();
  zero_released();
  return result;
}

void Vault::forget_transaction() {
  m_new_keys.clear();
  m_keys_written = false;
  m_taken.clear();
  m_released.clear();
  for (auto& list : m_free) list.dirty = false;
}

// One write per run of consecutive slots, then one sync.
void Vault::write_new_keys() {
  if (m_new_keys.empty()) return;
  std::vector<std::int64_t> slots;
  slots.reserve(m_new_keys.size());
  for (const auto& [slot, key] : m_new_keys) slots.push_back(slot);  // a std::map: sorted
  m_keys_written = true;
  for_each_run(slots, [&](std::int64_t first, std::size_t count) {
    std::string run;
    run.reserve(count * KeyStore::kSlotBytes);
    for (std::size_t i = 0; i < count; ++i) run += m_new_keys.at(first + static_cast<std::int64_t>(i));
    if (auto st = m_writable_keys.write_run(first, run); !st) throw std::runtime_error(st.error().message);
  });
  if (auto st = m_writable_keys.sync(); !st) throw std::runtime_error(st.error().message);
}

// Zeroes the released slots of committed transactions and syncs. On failure
// they stay queued (here, and unzeroed in the store) for the next commit or
// start-up; the change itself is committed, so it is not the caller's error.
void Vault::zero_released() {
  if (m_to_zero.empty()) return;
  Status st;
  for (const auto& list : m_to_zero) {
    for_each_run(list.slots, [&](std::int64_t first, std::size_t count) {
      if (st) st = m_writable_keys.zero_run(first, count);
    });
    if (!st) break;
  }
  if (st) st = m_writable_keys.sync();
  if (!st) {
    spdlog::error("keys.zero_failed slots={} error=\"{}\" (retried after the next commit and at start-up)",
                  unzeroed_slots(), st.error().message);
    return;
  }
  m_zeroed.insert(m_zeroed.end(), m_to_zero.begin(), m_to_zero.end());
  m_to_zero.clear();
}

std::size_t Vault::unzeroed_slots() const {
  std::size_t n = 0;
  for (const auto& list : m_to_zero) n += list.slots.size();
  return n;
}

Status Vault::insert(const Record& record) {
  if (!m_in_tx) return transaction([&] { return insert(record); });
  if (!record.has_values) return Error::internal("Vault::insert: record '" + record.key + "' was read without its values");
  return m_store.insert(seal_record(record));
}

Result<bool> Vault::insert_new(const Record& record) {
  bool inserted = false;
  const auto work = [&]() -> Status {
    if (!record.has_values) return Error::internal("Vault::insert_new: record '" + record.key + "' was read without its values");
    const store::StoredRecord row = seal_record(record);
    auto r = m_store.insert_new(row);
    if (!r) return std::move(r).error();
    inserted = *r;
    if (!inserted) release(row.sealed.slot);  // its key was written for nothing: destroyed after the commit
    return {};
  };
  if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
  return inserted;
}

Status Vault::replace(const Record& record) {
  if (!m_in_tx) return transaction([&] { return replace(record); });
  if (!record.has_values) return Error::internal("Vault::replace: record '" + record.key + "' was read without its values");
  auto old = m_store.remove(record.key, record.location);
  if (!old) return std::move(old).error();
  if (*old && **old >= 0) release(**old);
  return m_store.insert(seal_record(record));
}

Status Vault::update_schedule(const Record& record) {
  if (!m_in_tx) return transaction([&] { return update_schedule(record); });
  return m_store.update_schedule(record);
}

Result<bool> Vault::remove(const std::string& key, store::Location where) {
  bool removed = false;
  const auto work = [&]() -> Status {
    auto slot = m_store.remove(key, where);
    if (!slot) return std::move(slot).error();
    removed = slot->has_value();
    if (removed && **slot >= 0) release(**slot);
    return {};
  };
  if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
  return removed;
}

Result<bool> Vault::retire(const std::string& key, store::Location where, calendar::Instant purged_at,
                           calendar::Instant destroy_at) {
  if (!m_in_tx) return transaction_result([&] { return retire(key, where, purged_at, destroy_at); });
  return m_store.retire(key, where, purged_at, destroy_at);  // the key stays: nothing released
}

Result<bool> Vault::unretire(const std::string& key) {
  if (!m_in_tx) return transaction_result([&] { return unretire(key); });
  return m_store.unretire(key);
}

Result<bool> Vault::destroy_retired(const std::string& key) {
  if (!m_in_tx) return transaction_result([&] { return destroy_retired(key); });
  auto slot = m_store.drop_retired(key);
  if (!slot) return std::move(slot).error();
  if (*slot && **slot >= 0) release(**slot);
  return slot->has_value();
}

Result<std::int64_t> Vault::add_hold(const Hold& hold) {
  std::int64_t id = 0;
  const auto work = [&]() -> Status {
    auto added = m_store.add_hold(store::StoredHold{hold.id, hold.scope, seal(hold_aad(hold.scope), hold.target), hold.reason,
                                                    hold.placed_at, hold.placed_by});
    if (!added) return std::move(added).error();
    id = *added;
    return {};
  };
  if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
  return id;
}

Status Vault::add_job(const Job& job) {
  const auto work = [&]() -> Status {
    store::StoredJob row = job.row;
    row.subject = job.subject ? seal(job_aad(row.id), *job.subject) : store::Sealed{};
    return m_store.insert_job(row);
  };
  return m_in_tx ? work() : transaction(work);
}

Status Vault::update_job(const store::JobUpdate& update) {
  const auto work = [&]() -> Status {
    auto slot = m_store.update_job(update);
    if (!slot) return std::move(slot).error();
    if (*slot) release(**slot);
    return {};
  };
  return m_in_tx ? work() : transaction(work);
}

Result<bool> Vault::remove_hold(std::int64_t id) {
  bool removed = false;
  const auto work = [&]() -> Status {
    auto slot = m_store.remove_hold(id);
    if (!slot) return std::move(slot).error();
    removed = slot->has_value();
    if (removed) release(**slot);
    return {};
  };
  if (auto st = m_in_tx ? work() : transaction(work); !st) return std::move(st).error();
  return removed;
}

}  // namespace retentiond::vault
