package render

import "text/template"

// Helpers are the functions that need no data source: strings, encodings,
// parsing and formatting, arithmetic and collections, as consul-template
// 0.42 defines them (its pipe-friendly argument order included: the piped
// value comes last, so {{ 5 | add 2 }} is 7 and {{ 10 | subtract 3 }} is 7).
func Helpers() template.FuncMap {
	return template.FuncMap{
		// strings
		"toLower": toLower, "toUpper": toUpper, "toTitle": toTitle,
		"trim": trim, "trimPrefix": trimPrefix, "trimSuffix": trimSuffix, "trimSpace": trimSpace,
		"split": split, "splitToMap": splitToMap, "join": join,
		"replaceAll": replaceAll, "regexMatch": regexMatch, "regexReplaceAll": regexReplaceAll,
		"indent": indent,
		// encodings and digests
		"base64Encode": base64Encode, "base64Decode": base64Decode,
		"base64URLEncode": base64URLEncode, "base64URLDecode": base64URLDecode,
		"sha256Hex": sha256Hex, "md5sum": md5sum, "hmacSHA256Hex": hmacSHA256Hex,
		// parsing and formatting
		"parseBool": parseBool, "parseInt": parseInt, "parseUint": parseUint, "parseFloat": parseFloat,
		"parseJSON": parseJSON, "parseYAML": parseYAML,
		"toJSON": toJSON, "toJSONPretty": toJSONPretty,
		"toUnescapedJSON": toUnescapedJSON, "toUnescapedJSONPretty": toUnescapedJSONPretty,
		"toYAML": toYAML, "toTOML": toTOML,
		// arithmetic
		"add": add, "subtract": subtract, "multiply": multiply, "divide": divide, "modulo": modulo,
		"minimum": minimum, "maximum": maximum,
		// collections
		"contains": contains, "in": in,
		"containsAll": containsAll, "containsAny": containsAny,
		"containsNone": containsNone, "containsNotAll": containsNotAll,
		"explodeMap": explodeMap, "loop": loop,
	}
}
