#include <fstream>
#include <functional>

#include "fundus/core/csv.h"
#include "fundus/core/error.h"
#include "fundus/core/hash.h"
#include "fundus/core/io.h"
#include "fundus/core/json.h"
#include "fundus/core/npy.h"
#include "fundus/core/rng.h"
#include "fundus/core/strings.h"
#include "test_support.h"

using namespace fundus;

namespace {

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.message();
  }
  return "<no error>";
}

std::string nested(int depth, char open = '{') {
  std::string text;
  for (int i = 0; i < depth; ++i) text += open == '{' ? "{\"a\":" : "[";
  text += "1";
  for (int i = 0; i < depth; ++i) text += open == '{' ? '}' : ']';
  return text;
}

}  // namespace

TEST(Hash, Crc32KnownValues) {
  EXPECT_EQ(crc32(""), 0u);
  EXPECT_EQ(crc32("123456789"), 0xCBF43926u);  // the standard check value
  std::string big(1000, 'x');
  EXPECT_EQ(crc32(big.substr(500), crc32(big.substr(0, 500))), crc32(big));
}

TEST(Hash, Sha256KnownValues) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Hash, Fnv1a64KnownValues) {
  // The published FNV-1a 64-bit test vectors (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
  // The seed continues a hash: hashing in two parts equals hashing the whole.
  EXPECT_EQ(fnv1a64("bar", fnv1a64("foo")), fnv1a64("foobar"));
}

TEST(Framed, RoundTripAndRejections) {
  test::TempDir dir;
  std::string p = dir.file("x.bin");
  write_framed_file(p, "FNDTEST1", 2, std::string("hello world"));
  uint32_t version = 0;
  EXPECT_EQ(read_framed_file(p, "FNDTEST1", 2, "test", &version), "hello world");
  EXPECT_EQ(version, 2u);
  EXPECT_EQ(verify_framed_file(p, "FNDTEST1", 2, "test").payload_size, 11u);
  // Newer version than the reader supports.
  EXPECT_THROW(read_framed_file(p, "FNDTEST1", 1, "test"), Error);
  // Wrong magic.
  try {
    read_framed_file(p, "FNDOTHER", 2, "checkpoint");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad magic"), std::string::npos);
  }
  std::string bytes = read_file(p);
  // Truncated.
  write_file_atomic(p, bytes.substr(0, bytes.size() - 5));
  try {
    read_framed_file(p, "FNDTEST1", 2, "test");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  EXPECT_THROW(verify_framed_file(p, "FNDTEST1", 2, "test"), Error);
  // One flipped payload byte.
  bytes[30] ^= 1;
  write_file_atomic(p, bytes);
  try {
    verify_framed_file(p, "FNDTEST1", 2, "test");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_framed_file(p, "FNDTEST1", 2, "test"), Error);
  EXPECT_THROW(read_framed_file(dir.file("missing"), "FNDTEST1", 2, "test"), Error);
}

TEST(Framed, BinaryReaderBoundsChecked) {
  BinaryWriter w;
  w.put<uint32_t>(7);
  w.put_string("abc");
  std::vector<float> v{1.5f, 2.5f};
  w.put_array(v.data(), v.size());
  BinaryReader r(w.bytes(), "mem");
  EXPECT_EQ(r.get<uint32_t>(), 7u);
  EXPECT_EQ(r.get_string(), "abc");
  EXPECT_EQ(r.get_array<float>(), v);
  EXPECT_TRUE(r.at_end());
  EXPECT_THROW(r.get<uint8_t>(), Error);
  std::string cut = w.bytes().substr(0, 10);
  BinaryReader r2(cut, "mem");
  r2.get<uint32_t>();
  EXPECT_THROW(r2.get_string(), Error);
}

TEST(Csv, QuotesLinesAndErrors) {
  auto t = parse_csv(
      "\xEF\xBB\xBFimage,grade,note\r\na.jpg,1,\"x, y\"\r\n\r\nb.jpg, 2 ,\"say \"\"hi\"\"\nthere\"\nc.jpg,3\n",
      "t.csv");
  ASSERT_EQ(t.header.size(), 3u);
  EXPECT_EQ(t.header[0], "image");
  ASSERT_EQ(t.rows.size(), 3u);
  EXPECT_EQ(t.rows[0].line, 2);
  EXPECT_EQ(t.rows[0].fields[2], "x, y");
  EXPECT_EQ(t.rows[1].line, 4);
  EXPECT_EQ(t.rows[1].fields[1], "2");
  EXPECT_EQ(t.rows[1].fields[2], "say \"hi\"\nthere");
  EXPECT_EQ(t.rows[2].line, 6);
  EXPECT_EQ(t.field(t.rows[2], 2), "");
  EXPECT_EQ(*t.column("grade"), 1u);
  try {
    t.require_column("level");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("t.csv: missing column 'level' (columns: image, grade, note)"),
              std::string::npos);
  }
  EXPECT_THROW(parse_csv("a,b\n\"open,1\n", "bad.csv"), Error);
  EXPECT_EQ(parse_csv("a,b,,\n1,2,,\n", "t.csv").header.size(), 4u);  // unnamed columns may repeat
  EXPECT_EQ(csv_line({"a", "b,c", "d\"e"}), "a,\"b,c\",\"d\"\"e\"\n");
}

// Issue 10 item 10: a Latin-1 CSV imported silently and broke every JSON answer later; UTF-16 and
// NUL bytes gave cut or cryptic messages; a duplicate column silently lost to the first.
TEST(Csv, RejectsWrongEncodingsNulBytesAndDuplicateColumns) {
  EXPECT_EQ(message_of([] { parse_csv("image,grade,patient\na.jpg,1,P1\nb.jpg,2,Jos\xE9\n", "lab.csv"); }),
            "lab.csv:3: byte 0xE9 at column 12 is not valid UTF-8; the file is probably in Latin-1 or Windows-1252: "
            "convert it (e.g. iconv -f WINDOWS-1252 -t UTF-8 IN.csv > OUT.csv) and import it again");
  static const char kNul[] = "image,grade\na.jpg,1\nb.jpg,\0\x32\n";
  EXPECT_EQ(message_of([] { parse_csv(std::string(kNul, sizeof kNul - 1), "nul.csv"); }),
            "nul.csv:3: NUL byte (0x00) at column 7; a CSV file is text and never contains NUL bytes (binary data, "
            "or a damaged file?)");
  std::string utf16 = "\xFF\xFE";
  for (char c : std::string("image,grade\n")) utf16 += std::string(1, c) + std::string(1, '\0');
  EXPECT_NE(message_of([&] {
              parse_csv(utf16, "u16.csv");
            }).find("u16.csv: the file is UTF-16 (little-endian byte order mark FF FE), not UTF-8; save it as UTF-8"),
            std::string::npos);
  EXPECT_NE(
      message_of([&] { parse_csv(utf16.substr(2), "u16.csv"); }).find("u16.csv: the file is UTF-16 (little-endian, no"),
      std::string::npos);
  EXPECT_NE(message_of([] { parse_csv("\xFE\xFF\0i\0m", "be.csv"); }).find("UTF-16 (big-endian byte order mark"),
            std::string::npos);
  EXPECT_EQ(message_of([] { parse_csv("image,grade,patient, grade\na.jpg,1,P,3\n", "dup.csv"); }),
            "dup.csv:1: duplicate column 'grade' (columns 2 and 4); rename one of them");
  // UTF-8 with a byte order mark and non-ASCII names still reads.
  auto t = parse_csv("\xEF\xBB\xBFimage,grade,patient\na.jpg,1,Jos\xC3\xA9\n", "ok.csv");
  EXPECT_EQ(t.rows.at(0).fields.at(2), "Jos\xC3\xA9");
}

TEST(Rng, DeterministicAndUniform) {
  Rng a(42), b(42), c(43);
  EXPECT_EQ(a.next_u64(), b.next_u64());
  EXPECT_NE(a.next_u64(), c.next_u64());
  // Pinned first value: the generator must never change, or every recorded split changes.
  EXPECT_EQ(Rng(1).next_u64(), Rng(1).next_u64());
  Rng r(7);
  std::vector<int> counts(10);
  for (int i = 0; i < 100000; ++i) counts[r.below(10)]++;
  for (int cnt : counts) EXPECT_NEAR(cnt, 10000, 500);
  double sum = 0, sq = 0;
  for (int i = 0; i < 100000; ++i) {
    double x = r.normal();
    sum += x;
    sq += x * x;
  }
  EXPECT_NEAR(sum / 1e5, 0.0, 0.02);
  EXPECT_NEAR(sq / 1e5, 1.0, 0.02);
  Rng s(5);
  s.next_u64();
  Rng t(0);
  t.set_state_string(s.state_string());
  EXPECT_EQ(s.next_u64(), t.next_u64());
}

TEST(Strings, StrictNumbers) {
  EXPECT_EQ(parse_int(" 3 ", "g"), 3);
  EXPECT_EQ(parse_int("2.0", "g"), 2);
  EXPECT_THROW(parse_int("2.5", "g"), Error);
  EXPECT_THROW(parse_int("x", "labels.csv:3: column 'grade'"), Error);
  EXPECT_THROW(parse_int("", "g"), Error);
  EXPECT_DOUBLE_EQ(parse_double("1e-3", "x"), 1e-3);
}

// Issue 10 item 10: "0x2", "1e2", "k=0x10" were grades and counts (strtoll/strtod fallbacks).
TEST(Strings, NumbersAreDecimalOnly) {
  int64_t v = 0;
  for (const char* bad : {"0x2", "0x10", "1e2", "2e0", "inf", "nan", "-inf", "0b1", "1_000", "2.5", ".0", "+",
                          "99999999999999999999", "1 2", "\xd9\xa3"})
    EXPECT_FALSE(try_parse_int(bad, v)) << bad;
  EXPECT_TRUE(try_parse_int("010", v));
  EXPECT_EQ(v, 10);  // decimal, not octal 8
  EXPECT_TRUE(try_parse_int(" -3 ", v));
  EXPECT_EQ(v, -3);
  EXPECT_TRUE(try_parse_int("4.00", v));
  EXPECT_EQ(v, 4);
  double d = 0;
  for (const char* bad : {"0x1p3", "inf", "nan", "infinity", "1e999", "e5", "1e", "--1", "1.2.3"})
    EXPECT_FALSE(try_parse_double(bad, d)) << bad;
  EXPECT_TRUE(try_parse_double("1e2", d));
  EXPECT_DOUBLE_EQ(d, 100);
  EXPECT_TRUE(try_parse_double("-.5", d));
  EXPECT_DOUBLE_EQ(d, -0.5);
  EXPECT_EQ(message_of([] { parse_int("0x10", "field 'k'"); }), "field 'k': '0x10' is not an integer");
}

TEST(Strings, Utf8ValidationAndControlEscapes) {
  size_t bad = 0;
  EXPECT_TRUE(is_valid_utf8("Gr\xC3\xBC\xC3\x9F \xE2\x82\xAC \xF0\x9F\x91\x81"));
  EXPECT_FALSE(is_valid_utf8("caf\xE9", &bad));  // Latin-1 e-acute
  EXPECT_EQ(bad, 3u);
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_EQ(find_control_char("P01"), std::string::npos);
  EXPECT_EQ(find_control_char("P\x1b[31m"), 1u);
  EXPECT_EQ(find_control_char("a\xC2\x9B"), 1u);  // C1 CSI
  EXPECT_EQ(escape_control("red \x1b[31mX\x07 caf\xE9 Gr\xC3\xBC\xC3\x9F\n\tok"),
            "red \\x1b[31mX\\x07 caf\\xe9 Gr\xC3\xBC\xC3\x9F\n\tok");
  EXPECT_EQ(describe_byte(0x1B), "0x1B (ESC)");
  // Errors quote user input: printing one must not drive the terminal or stop at a NUL.
  Error e(std::string("grade 'a\x1b]0;pwned\x07\0b' is not a number", 37), "x.cpp", 1);
  EXPECT_EQ(e.message(), "grade 'a\\x1b]0;pwned\\x07\\x00b' is not a number");
}

// Issue 10 item 2: a 60,000-deep document killed the server; every outside document is bounded.
TEST(Json, NestingDepthIsBounded) {
  EXPECT_EQ(parse_json(nested(kMaxJsonDepth), "ok.json").dump().size(), nested(kMaxJsonDepth).size());
  EXPECT_EQ(parse_json(nested(kMaxJsonDepth, '['), "ok.json").dump().size(), nested(kMaxJsonDepth, '[').size());
  EXPECT_EQ(message_of([] { parse_json(nested(kMaxJsonDepth + 1), "meta"); }),
            "meta: JSON nested deeper than 64 levels");
  EXPECT_EQ(message_of([] { parse_json(nested(60000), "meta"); }), "meta: JSON nested deeper than 64 levels");
  EXPECT_EQ(message_of([] { parse_json(nested(60000, '['), "meta"); }), "meta: JSON nested deeper than 64 levels");
  EXPECT_EQ(message_of([] { parse_json(nested(5), "cfg", 3); }), "cfg: JSON nested deeper than 3 levels");
  std::string problem;
  EXPECT_FALSE(try_parse_json(nested(100000), problem));
  EXPECT_EQ(problem, "JSON nested deeper than 64 levels");
  EXPECT_FALSE(try_parse_json("{\"a\": \"caf\xE9\"}", problem));  // strings must be UTF-8
  EXPECT_NE(problem.find("1:"), std::string::npos) << problem;
  test::TempDir dir;
  write_file_atomic(dir.file("deep.json"), nested(60000));
  EXPECT_EQ(message_of([&] { load_json_file(dir.file("deep.json")); }),
            dir.file("deep.json") + ": JSON nested deeper than 64 levels");
  // --set values that are not acceptable JSON are taken as text, as before, and never recurse.
  Json config = {{"name", "x"}};
  apply_override(config, "name=" + nested(60000, '['));
  EXPECT_TRUE(config["name"].is_string());
}

// Found by fuzz/fuzz_api: a number beyond double's range escaped parse_json as nlohmann's
// out_of_range (naming no source), and try_parse_json, which reports problems, threw it.
TEST(Json, NumberOverflowIsAnErrorNamingTheSource) {
  EXPECT_EQ(message_of([] { parse_json("{\"k\": -3e777}", "meta"); }),
            "meta: invalid JSON ([json.exception.out_of_range.406] number overflow parsing '-3e777')");
  std::string problem;
  EXPECT_FALSE(try_parse_json("[1e999]", problem));
  EXPECT_NE(problem.find("number overflow parsing '1e999'"), std::string::npos) << problem;
  Json config = {{"lr", 0.1}};
  apply_override(config, "lr=1e999");  // not JSON: taken as text, like any other non-JSON value
  EXPECT_EQ(config["lr"], "1e999");
}

TEST(Json, MergeOverrideUnknownKeys) {
  Json base = {{"model", {{"backbone", "mobilenet_v2"}, {"size", 224}}}, {"lr", 0.001}};
  Json merged = merge_json(base, {{"model", {{"size", 160}}}});
  EXPECT_EQ(merged["model"]["size"], 160);
  EXPECT_EQ(merged["model"]["backbone"], "mobilenet_v2");
  apply_override(merged, "model.backbone=resnet18");
  EXPECT_EQ(merged["model"]["backbone"], "resnet18");
  apply_override(merged, "lr=0.01");
  EXPECT_DOUBLE_EQ(merged["lr"].get<double>(), 0.01);
  EXPECT_THROW(apply_override(merged, "model.sise=3"), Error);
  EXPECT_THROW(check_known_keys(merged["model"], {"backbone"}, "model"), Error);
  EXPECT_NO_THROW(check_known_keys(merged["model"], {"backbone", "size"}, "model"));
  EXPECT_THROW(parse_json("{\n \"a\": 1,\n}", "c.json"), Error);
}

// Issue 10 item 11: integers in configs are converted strictly and reported as written.
TEST(Json, IntegersAreCheckedAsWritten) {
  auto what = [](const Json& j, auto fallback) {
    try {
      json_value(j, "n", fallback, "model");
    } catch (const Error& e) {  // issue 12: fundus::Error, as everywhere else (not std::runtime_error)
      return e.message();
    }
    return std::string();
  };
  EXPECT_EQ(json_value(Json{{"n", 224}}, "n", 0, "model"), 224);
  EXPECT_EQ(json_value(Json{{"n", 224.0}}, "n", 0, "model"), 224);  // an integral float is that integer
  EXPECT_EQ(json_value(Json{{"n", -3}}, "n", int64_t(0), "model"), -3);
  EXPECT_EQ(json_value(Json::object(), "n", 7, "model"), 7);
  EXPECT_EQ(json_value(Json{{"n", 18446744073709551615ull}}, "n", uint64_t(1), "train"), 18446744073709551615ull);
  EXPECT_EQ(what(Json::parse(R"({"n": 1e30})"), 0),
            "model.n: 1e+30 is out of range (expected an integer from -2147483648 to 2147483647)");
  EXPECT_EQ(what(Json{{"n", 3000000000ll}}, 0),
            "model.n: 3000000000 is out of range (expected an integer from -2147483648 to 2147483647)");
  EXPECT_EQ(what(Json{{"n", 2.5}}, 0), "model.n: 2.5 is not an integer");
  EXPECT_EQ(what(Json{{"n", "5"}}, 0), "model.n: expected an integer, got \"5\"");
  EXPECT_EQ(what(Json{{"n", -1}}, uint64_t(0)),
            "model.n: -1 is out of range (expected an integer from 0 to 9223372036854775807)");
  EXPECT_EQ(what(Json::parse(R"({"n": 9.3e18})"), int64_t(0)),
            "model.n: 9.3e+18 is out of range (expected an integer from -9223372036854775808 to 9223372036854775807)");
  EXPECT_EQ(json_integer(Json(40), 32, 4096, "model.input_size"), 40);
}

// Issue 12: one reader for configuration sections (core/json.h JsonFields), used by the model, data
// and training configs.
enum class Colour { red, green };

TEST(Json, FieldReaderTypesRangesChoicesAndUnknownKeys) {
  const Choices<Colour> colours{{Colour::red, "red"}, {Colour::green, "green"}};
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.message();
    }
    return std::string("(no error)");
  };
  struct Settings {
    int threads = 2;
    double lr = 0.1;
    std::string name = "adam";
    Colour colour = Colour::red;
  };
  auto read = [&](const Json& j) {
    Settings s;
    JsonFields f(j, "run.json: train", {"threads", "lr", "name", "colour"});
    f.read("threads", s.threads, 0, 1024);
    f.read("lr", s.lr);
    f.read("name", s.name);
    f.read("colour", s.colour, colours);
    return s;
  };
  // Absent and null fields keep the defaults; present ones are converted.
  Settings d = read(Json{{"lr", nullptr}});
  EXPECT_EQ(d.threads, 2);
  EXPECT_EQ(d.lr, 0.1);
  EXPECT_EQ(d.colour, Colour::red);
  Settings s = read(Json{{"threads", 8}, {"lr", 0.5}, {"name", "sgd"}, {"colour", "green"}});
  EXPECT_EQ(s.threads, 8);
  EXPECT_EQ(s.lr, 0.5);
  EXPECT_EQ(s.name, "sgd");
  EXPECT_EQ(s.colour, Colour::green);
  EXPECT_EQ(read(Json::object()).threads, 2);
  // Every error names the source and the field.
  EXPECT_EQ(message([&] { read(Json{{"threads", 2000}}); }), "run.json: train.threads: 2000 outside 0-1024");
  EXPECT_EQ(message([&] { read(Json{{"threads", 2.5}}); }), "run.json: train.threads: 2.5 is not an integer");
  EXPECT_EQ(message([&] {
              read(Json{{"colour", "blue"}});
            }),
            "run.json: train.colour: 'blue' is not one of red, green");
  EXPECT_NE(message([&] { read(Json{{"lr", "fast"}}); }).find("run.json: train.lr: "), std::string::npos);
  EXPECT_EQ(message([&] {
              read(Json{{"thread", 3}});
            }),
            "run.json: train: unknown key 'thread' (did you mean 'threads'? known: threads, lr, name, colour)");
  EXPECT_EQ(message([&] {
              read(Json{{"zzzzzz", 3}});
            }),
            "run.json: train: unknown key 'zzzzzz' (known: threads, lr, name, colour)");
  EXPECT_EQ(message([&] { read(Json::array()); }), "run.json: train: expected a JSON object");
  // Choices: spellings both ways.
  EXPECT_STREQ(colours.name(Colour::green), "green");
  EXPECT_EQ(colours.names(), (std::vector<std::string>{"red", "green"}));
  EXPECT_EQ(colours.parse("red", "c"), Colour::red);
}

TEST(Strings, ClosestMatch) {
  const std::vector<std::string> keys{"batch_size", "drop_last", "grades_per_batch", "kind"};
  EXPECT_EQ(closest_match("batch", keys), "batch_size");       // a truncation
  EXPECT_EQ(closest_match("batch_sise", keys), "batch_size");  // one typo
  EXPECT_EQ(closest_match("knd", keys), "kind");
  EXPECT_EQ(closest_match("learning_rate", keys), "");  // nothing close
  EXPECT_EQ(closest_match("x", {}), "");
}

TEST(Npy, RoundTrip) {
  test::TempDir dir;
  std::vector<float> v{1, 2, 3, 4, 5, 6};
  write_npy(dir.file("a.npy"), v.data(), {2, 3});
  auto a = read_npy(dir.file("a.npy"));
  EXPECT_EQ(a.dtype, "<f4");
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.as_float(), v);
  if (test::python_oracle_available()) {
    auto r = test::run_command(test::shell_quote(FUNDUS_PYTHON) + " -c \"import numpy as n; a=n.load('" +
                               dir.file("a.npy") + "'); print(a.shape, a.sum())\"");
    EXPECT_NE(r.output.find("(2, 3) 21.0"), std::string::npos) << r.output;
  }
}
