package checksum

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOf(t *testing.T) {
	// Known vectors (FIPS 180-2 / sha256sum).
	cases := map[string]string{
		"":    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"abc": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
	}
	for in, want := range cases {
		if got := OfString(in); got != want {
			t.Errorf("OfString(%q) = %s, want %s", in, got, want)
		}
		if !Valid(want) {
			t.Errorf("Valid(%s) = false", want)
		}
	}
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := OfFile(path); err != nil || got != cases["abc"] {
		t.Errorf("OfFile = %s, %v", got, err)
	}
	if _, err := OfFile(path + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("OfFile(missing) error = %v, want not-exist", err)
	}
}

func TestValid(t *testing.T) {
	for _, s := range []string{"", "abc", "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a", "zz7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"} {
		if Valid(s) {
			t.Errorf("Valid(%q) = true", s)
		}
	}
}

func TestVerify(t *testing.T) {
	sum := OfString("abc")
	if err := Verify([]byte("abc"), sum); err != nil {
		t.Fatal(err)
	}
	err := Verify([]byte("abd"), sum)
	if !errors.Is(err, ErrMismatch) {
		t.Fatalf("Verify(changed) = %v, want ErrMismatch", err)
	}
}

func TestLines(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{{"", 0}, {"a", 1}, {"a\n", 1}, {"a\nb", 2}, {"a\nb\n", 2}, {"\n\n", 2}}
	for _, c := range cases {
		if got := Lines([]byte(c.in)); got != c.want {
			t.Errorf("Lines(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}
