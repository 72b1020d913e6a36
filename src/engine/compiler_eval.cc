// Verdict functions of the port for one peer class (the evaluator's tier logic, run over
// port segments instead of single flows) and their optimal prefix encoding.
#include <algorithm>
#include <cstring>
#include <iterator>
#include <optional>

#include "engine/compiler_internal.h"

namespace bulkhead::engine::compiler_internal {

using policy::Protocol;
using policy::RuleAction;

namespace {

using Interval = std::pair<uint32_t, uint32_t>;  // closed

// The ports of `protocol` on which a rule's port list matches (MatchPorts of the
// evaluator): no list matches everything; portless protocols match only no list; named
// ports resolve against the destination's named ports.
void RuleIntervals(const RuleRec& r, Protocol protocol,
                   const std::vector<identity::PortDefinition>& dst_ports,
                   std::vector<Interval>& out) {
  out.clear();
  if (r.ports->empty()) {
    out.emplace_back(0, kPortSpace - 1);
    return;
  }
  if (!policy::HasPorts(protocol)) return;
  for (const auto& pm : *r.ports) {
    bool protocol_ok = !pm.protocol || *pm.protocol == protocol;
    if (!protocol_ok) continue;
    switch (pm.kind) {
      case policy::PortMatch::Kind::kAllPorts:
        out.assign(1, Interval{0, kPortSpace - 1});
        return;
      case policy::PortMatch::Kind::kRange:
        if (pm.first <= pm.last) out.emplace_back(pm.first, pm.last);
        break;
      case policy::PortMatch::Kind::kNamed:
        for (const auto& np : dst_ports) {
          if (np.name == pm.name && np.protocol == protocol) out.emplace_back(np.port, np.port);
        }
        break;
    }
  }
}

struct Matched {
  uint32_t pos = 0;
  const RuleRec* rule = nullptr;
  std::vector<Interval> ports;
  bool Covers(uint32_t port) const {
    return std::any_of(ports.begin(), ports.end(), [port](const Interval& iv) {
      return iv.first <= port && port <= iv.second;
    });
  }
};

Outcome RuleOutcome(const RuleRec& r) {
  Outcome o;
  o.verdict = r.action == RuleAction::kDeny ? BULKHEAD_VERDICT_DENY : BULKHEAD_VERDICT_ALLOW;
  o.tier = r.tier;
  o.reason = BULKHEAD_REASON_RULE;
  o.rule_id = r.rule_id;
  return o;
}

// Bounds of the tiers within the matched rules (which are in program order).
struct TierBounds {
  size_t ns_first = 0;
  size_t baseline_first = 0;
};

// The evaluator's RunTiers at one port, for the rules that match the peer.
Outcome EvalAt(const TierProgram& prog, const Matched* m, size_t m_size, const TierBounds& b,
               uint32_t port, bool include_audit) {
  auto considered = [include_audit](const RuleRec& r) { return include_audit || !r.audit; };
  // 1. Admin tier: first matching rule in priority order; Pass ends the tier.
  for (size_t i = 0; i < b.ns_first; ++i) {
    const RuleRec& r = *m[i].rule;
    if (!considered(r) || !m[i].Covers(port)) continue;
    if (r.action == RuleAction::kPass) break;
    return RuleOutcome(r);
  }
  // 2. Namespace tier: isolation; native denies win over the union of allows.
  if (prog.ns_enforce || (include_audit && prog.ns_audit)) {
    for (RuleAction action : {RuleAction::kDeny, RuleAction::kAllow}) {
      for (size_t i = b.ns_first; i < b.baseline_first; ++i) {
        const RuleRec& r = *m[i].rule;
        if (r.action != action || !considered(r) || !m[i].Covers(port)) continue;
        return RuleOutcome(r);
      }
    }
    Outcome o;
    o.verdict = BULKHEAD_VERDICT_DENY;
    o.tier = BULKHEAD_TIER_NAMESPACE;
    o.reason = BULKHEAD_REASON_ISOLATED;
    return o;
  }
  // 3. Baseline tier.
  for (size_t i = b.baseline_first; i < m_size; ++i) {
    const RuleRec& r = *m[i].rule;
    if (!considered(r) || !m[i].Covers(port)) continue;
    if (r.action == RuleAction::kPass) break;
    return RuleOutcome(r);
  }
  // 4. Default.
  for (const DefaultStep& step : prog.defaults) {
    if (step.audit && !include_audit) continue;
    Outcome o;
    o.verdict = BULKHEAD_VERDICT_DENY;
    o.tier = BULKHEAD_TIER_DEFAULT;
    o.reason = BULKHEAD_REASON_DEFAULT_DENY;
    o.rule_id = step.rule_id;
    return o;
  }
  return Outcome{};  // default allow
}

}  // namespace

std::string SerializeFunction(const VerdictFunction& f) {
  std::string s;
  for (const auto& pf : f) {
    uint32_t n = static_cast<uint32_t>(pf.pieces.size());
    s.append(reinterpret_cast<const char*>(&n), sizeof(n));
    for (const auto& [start, o] : pf.pieces) {
      bulkhead_policy_port_value v = o.ToAbi();
      s.append(reinterpret_cast<const char*>(&start), sizeof(start));
      s.append(reinterpret_cast<const char*>(&v), sizeof(v));
    }
  }
  return s;
}

VerdictFunction EvaluateFunction(const TierProgram& prog, const std::vector<RuleRec>& rules,
                                 const std::vector<uint8_t>& peer_ok,
                                 const std::vector<identity::PortDefinition>& dst_ports) {
  // Scratch reused across calls (the intervals keep their capacity).
  thread_local std::vector<Matched> pool;
  size_t n = 0;
  for (uint32_t pos = 0; pos < prog.rules.size(); ++pos) {
    if (!peer_ok[pos]) continue;
    if (n == pool.size()) pool.emplace_back();
    pool[n].pos = pos;
    pool[n].rule = &rules[prog.rules[pos]];
    ++n;
  }
  const Matched* m = pool.data();
  TierBounds b;
  while (b.ns_first < n && m[b.ns_first].pos < prog.ns_begin) ++b.ns_first;
  b.baseline_first = b.ns_first;
  while (b.baseline_first < n && m[b.baseline_first].pos < prog.baseline_begin) {
    ++b.baseline_first;
  }

  VerdictFunction f;
  thread_local std::vector<uint32_t> cuts;
  for (int k = 0; k < kNumProtocols; ++k) {
    Protocol protocol = kProtocols[k];
    cuts.assign(1, 0);
    for (size_t i = 0; i < n; ++i) {
      Matched& x = pool[i];
      RuleIntervals(*x.rule, protocol, dst_ports, x.ports);
      if (!policy::HasPorts(protocol)) continue;
      for (const auto& [first, last] : x.ports) {
        cuts.push_back(first);
        if (last + 1 < kPortSpace) cuts.push_back(last + 1);
      }
    }
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    PortFunction& pf = f[k];
    for (uint32_t start : cuts) {
      Outcome o = EvalAt(prog, m, n, b, start, /*include_audit=*/false);
      if (prog.has_audit && o.verdict == BULKHEAD_VERDICT_ALLOW &&
          EvalAt(prog, m, n, b, start, /*include_audit=*/true).verdict == BULKHEAD_VERDICT_DENY) {
        o.flags |= BULKHEAD_POLICY_F_AUDIT_WOULD_DENY;
      }
      if (pf.pieces.empty() || !(pf.pieces.back().second == o)) pf.pieces.emplace_back(start, o);
    }
  }
  return f;
}

namespace {

// Candidate sets of outcome indices: a bit mask when a function has at most 64 distinct
// outcomes (always, in practice), else a sorted vector.
struct MaskSet {
  uint64_t bits = 0;
  static MaskSet Of(uint32_t i) { return MaskSet{uint64_t{1} << i}; }
  static MaskSet Combine(const MaskSet& a, const MaskSet& b) {
    uint64_t both = a.bits & b.bits;
    return MaskSet{both != 0 ? both : a.bits | b.bits};
  }
  bool Contains(uint32_t i) const { return (bits >> i) & 1; }
  uint32_t Min() const { return static_cast<uint32_t>(__builtin_ctzll(bits)); }
};
struct VectorSet {
  std::vector<uint32_t> items;  // sorted
  static VectorSet Of(uint32_t i) { return VectorSet{{i}}; }
  static VectorSet Combine(const VectorSet& a, const VectorSet& b) {
    VectorSet r;
    std::set_intersection(a.items.begin(), a.items.end(), b.items.begin(), b.items.end(),
                          std::back_inserter(r.items));
    if (r.items.empty()) {
      std::set_union(a.items.begin(), a.items.end(), b.items.begin(), b.items.end(),
                     std::back_inserter(r.items));
    }
    return r;
  }
  bool Contains(uint32_t i) const { return std::binary_search(items.begin(), items.end(), i); }
  uint32_t Min() const { return items.front(); }
};

// ORTC (Draves et al., "Constructing optimal IP routing tables") over the 16-bit port trie,
// descending only into subtrees on which the function is not constant. Pass 1 computes,
// bottom-up, each node's candidate outcomes (those needing fewest entries below it: the
// intersection of its children's when not empty, else their union); pass 2 walks top-down
// and emits an entry only where the inherited outcome is not a candidate.
template <typename Set>
class PrefixEncoder {
 public:
  PrefixEncoder(const PortFunction& f, const std::vector<Outcome>& outcomes,
                const std::vector<uint32_t>& piece_outcome)
      : f_(f), outcomes_(outcomes), piece_outcome_(piece_outcome) {
    nodes_.reserve(64);
  }

  std::vector<PortPrefix> Run() {
    int root = Build(0, 0);
    Emit(root, std::nullopt);
    return std::move(out_);
  }

 private:
  struct Node {
    uint32_t lo = 0;
    uint8_t bits = 0;
    int left = -1;
    int right = -1;
    Set set;
  };

  size_t PieceOf(uint32_t port) const {
    auto it = std::upper_bound(f_.pieces.begin(), f_.pieces.end(), port,
                               [](uint32_t p, const auto& piece) { return p < piece.first; });
    return static_cast<size_t>(it - f_.pieces.begin()) - 1;
  }

  int Build(uint32_t lo, uint8_t bits) {
    uint32_t size = kPortSpace >> bits;
    int id = static_cast<int>(nodes_.size());
    nodes_.push_back(Node{lo, bits, -1, -1, {}});
    size_t first = PieceOf(lo);
    size_t last = PieceOf(lo + size - 1);
    if (first == last) {
      nodes_[id].set = Set::Of(piece_outcome_[first]);
      return id;
    }
    int left = Build(lo, static_cast<uint8_t>(bits + 1));
    int right = Build(lo + size / 2, static_cast<uint8_t>(bits + 1));
    Set set = Set::Combine(nodes_[left].set, nodes_[right].set);
    nodes_[id].left = left;
    nodes_[id].right = right;
    nodes_[id].set = std::move(set);
    return id;
  }

  void Emit(int id, std::optional<uint32_t> inherited) {
    const Node& n = nodes_[id];
    uint32_t chosen;
    if (inherited && n.set.Contains(*inherited)) {
      chosen = *inherited;
    } else {
      chosen = n.set.Min();  // any candidate is optimal; the first keeps output stable
      out_.push_back(PortPrefix{static_cast<uint16_t>(n.lo), n.bits, outcomes_[chosen]});
    }
    if (n.left >= 0) {
      Emit(n.left, chosen);
      Emit(n.right, chosen);
    }
  }

  const PortFunction& f_;
  const std::vector<Outcome>& outcomes_;
  const std::vector<uint32_t>& piece_outcome_;
  std::vector<Node> nodes_;
  std::vector<PortPrefix> out_;
};

}  // namespace

std::vector<PortPrefix> EncodePrefixes(const PortFunction& f) {
  if (f.pieces.size() == 1) return {PortPrefix{0, 0, f.pieces.front().second}};
  // Outcomes numbered in order of first appearance (by port).
  std::vector<Outcome> outcomes;
  std::vector<uint32_t> piece_outcome;
  piece_outcome.reserve(f.pieces.size());
  for (const auto& [start, o] : f.pieces) {
    auto it = std::find(outcomes.begin(), outcomes.end(), o);
    piece_outcome.push_back(static_cast<uint32_t>(it - outcomes.begin()));
    if (it == outcomes.end()) outcomes.push_back(o);
  }
  if (outcomes.size() <= 64) return PrefixEncoder<MaskSet>(f, outcomes, piece_outcome).Run();
  return PrefixEncoder<VectorSet>(f, outcomes, piece_outcome).Run();
}

}  // namespace bulkhead::engine::compiler_internal
