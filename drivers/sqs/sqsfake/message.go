package sqsfake

import (
	"crypto/md5" //nolint:gosec // SQS digests are MD5 by definition
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"math/big"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// AttributeValue is a message attribute as SQS transports it (MessageAttributeValue).
type AttributeValue struct {
	DataType         string   `json:"DataType"`
	StringValue      *string  `json:"StringValue,omitempty"`
	BinaryValue      []byte   `json:"BinaryValue,omitempty"`
	StringListValues []string `json:"StringListValues,omitempty"`
	BinaryListValues [][]byte `json:"BinaryListValues,omitempty"`
}

// message is one stored message. Guarded by Server.mu.
type message struct {
	id        string
	body      string
	md5Body   string
	attrs     map[string]AttributeValue
	sysAttrs  map[string]AttributeValue // AWSTraceHeader
	md5Attrs  string
	md5Sys    string
	sent      time.Time
	visibleAt time.Time // delayed until / invisible until
	inflight  bool      // received and not made visible again
	handle    string    // current receipt handle ("" before the first receive)
	receives  int
	firstRecv time.Time
	recvAt    time.Time // last receive (12-hour visibility limit)
	group     string
	dedupID   string
	seq       string
	dlqSource string // ARN of the queue it was moved from by a redrive
}

func (m *message) everReceived() bool { return m.receives > 0 }

func (m *message) isInflight(now time.Time) bool { return m.inflight && m.visibleAt.After(now) }

func (m *message) available(now time.Time) bool { return !m.visibleAt.After(now) }

var (
	attrNameRe  = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)
	batchIDRe   = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)
	groupIDRe   = regexp.MustCompile("^[\\x21-\\x7e]{1,128}$") // alphanumerics and punctuation
	numberRe    = regexp.MustCompile(`^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$`)
	maxNumber   = new(big.Float).SetFloat64(1e126)
	minNumber   = new(big.Float).SetFloat64(-1e128)
	validTypeRe = regexp.MustCompile(`^(String|Number|Binary)(\.[^\s]+)?$`)
)

// validBody reports whether s has only the characters SQS accepts in a message body:
// #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF, in valid UTF-8.
func validBody(s string) (rune, bool) {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size <= 1 {
			return r, false
		}
		switch {
		case r == 0x9 || r == 0xA || r == 0xD:
		case r >= 0x20 && r <= 0xD7FF:
		case r >= 0xE000 && r <= 0xFFFD:
		case r >= 0x10000 && r <= 0x10FFFF:
		default:
			return r, false
		}
		i += size
	}
	return 0, true
}

// validateAttrs checks message attributes like SQS does and returns their size in bytes
// (name + type + value, as counted against the maximum message size).
func validateAttrs(attrs map[string]AttributeValue, system bool) (int, *apiError) {
	if len(attrs) > maxMessageAttrs {
		return 0, errInvalidParameterValue("Number of message attributes [%d] exceeds the allowed maximum [%d].", len(attrs), maxMessageAttrs)
	}
	size := 0
	for name, v := range attrs {
		if system {
			if name != "AWSTraceHeader" {
				return 0, errInvalidParameterValue("Message system attribute name '%s' is invalid.", name)
			}
			if v.DataType != "String" {
				return 0, errInvalidParameterValue("Message system attribute '%s' must be of type String.", name)
			}
		} else {
			lower := strings.ToLower(name)
			if !attrNameRe.MatchString(name) || strings.HasPrefix(lower, "aws.") || strings.HasPrefix(lower, "amazon.") ||
				strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
				return 0, errInvalidParameterValue("Message (user) attribute name '%s' is invalid.", name)
			}
		}
		if !validTypeRe.MatchString(v.DataType) || len(v.DataType) > 256 {
			return 0, errInvalidParameterValue("The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", name)
		}
		if len(v.StringListValues) > 0 || len(v.BinaryListValues) > 0 {
			return 0, errInvalidParameterValue("Message (user) attribute '%s': list values are not supported.", name)
		}
		size += len(name) + len(v.DataType)
		switch {
		case strings.HasPrefix(v.DataType, "Binary"):
			if len(v.BinaryValue) == 0 || v.StringValue != nil {
				return 0, errInvalidParameterValue("Message (user) attribute '%s' must contain a non-empty value of type 'Binary'.", name)
			}
			size += len(v.BinaryValue)
		default:
			if v.StringValue == nil || *v.StringValue == "" || v.BinaryValue != nil {
				return 0, errInvalidParameterValue("Message (user) attribute '%s' must contain a non-empty value of type '%s'.", name, baseType(v.DataType))
			}
			if _, ok := validBody(*v.StringValue); !ok {
				return 0, errInvalidParameterValue("Message (user) attribute '%s' contains invalid characters.", name)
			}
			if strings.HasPrefix(v.DataType, "Number") && !validNumber(*v.StringValue) {
				return 0, errInvalidParameterValue("Can't cast the value of message (user) attribute '%s' to a number.", name)
			}
			size += len(*v.StringValue)
		}
	}
	return size, nil
}

func baseType(t string) string {
	if i := strings.IndexByte(t, '.'); i >= 0 {
		return t[:i]
	}
	return t
}

// validNumber accepts the numbers SQS does: up to 38 significant digits, from -10^128 to 10^126.
func validNumber(s string) bool {
	if !numberRe.MatchString(s) {
		return false
	}
	digits := 0
	mantissa := s
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mantissa = s[:i]
	}
	trimmed := strings.TrimLeft(strings.TrimLeft(mantissa, "+-"), "0.")
	for _, r := range trimmed {
		if r >= '0' && r <= '9' {
			digits++
		}
	}
	if digits > 38 {
		return false
	}
	f, _, err := big.ParseFloat(s, 10, 256, big.ToNearestEven)
	if err != nil {
		return false
	}
	return f.Cmp(maxNumber) <= 0 && f.Cmp(minNumber) >= 0
}

// md5Hex is the hex MD5 of s (MD5OfMessageBody / MD5OfBody).
func md5Hex(s string) string {
	sum := md5.Sum([]byte(s)) //nolint:gosec // protocol-defined digest
	return hex.EncodeToString(sum[:])
}

// md5OfAttributes computes the documented digest of message attributes: for each attribute in
// name order, the length-prefixed (4-byte big-endian) name and data type, a transport byte (1 for
// String and Number, 2 for Binary) and the length-prefixed value. "" for no attributes.
func md5OfAttributes(attrs map[string]AttributeValue) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for k := range attrs {
		names = append(names, k)
	}
	sort.Strings(names)
	h := md5.New() //nolint:gosec // protocol-defined digest
	var n [4]byte
	put := func(b []byte) {
		binary.BigEndian.PutUint32(n[:], uint32(len(b))) //nolint:gosec // bounded by the request size
		h.Write(n[:])
		h.Write(b)
	}
	for _, name := range names {
		v := attrs[name]
		put([]byte(name))
		put([]byte(v.DataType))
		if strings.HasPrefix(v.DataType, "Binary") {
			h.Write([]byte{2})
			put(v.BinaryValue)
		} else {
			h.Write([]byte{1})
			put([]byte(deref(v.StringValue)))
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// selectAttrs returns the attributes matching names: "All" or ".*" for all, "prefix.*" for a
// prefix, or exact names.
func selectAttrs(attrs map[string]AttributeValue, names []string) map[string]AttributeValue {
	if len(attrs) == 0 || len(names) == 0 {
		return nil
	}
	out := map[string]AttributeValue{}
	for _, want := range names {
		switch {
		case want == "All" || want == ".*":
			for k, v := range attrs {
				out[k] = v
			}
		case strings.HasSuffix(want, ".*"):
			prefix := strings.TrimSuffix(want, "*")
			for k, v := range attrs {
				if strings.HasPrefix(k, prefix) {
					out[k] = v
				}
			}
		default:
			if v, ok := attrs[want]; ok {
				out[want] = v
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// receiptHandle builds an opaque handle naming the queue, the message and the receive.
func receiptHandle(queueName, id string, receive int) string {
	raw := queueName + "\x00" + id + "\x00" + strconv.Itoa(receive) + "\x00" + requestID()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// parseHandle returns the queue name and message id a handle was issued for.
func parseHandle(handle string) (queueName, id string, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	if err != nil {
		return "", "", false
	}
	parts := strings.Split(string(raw), "\x00")
	if len(parts) != 4 {
		return "", "", false
	}
	return parts[0], parts[1], true
}
