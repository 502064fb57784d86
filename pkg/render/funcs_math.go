package render

import (
	"errors"
	"fmt"
	"reflect"
)

// Arithmetic as consul-template does it: the piped value is the left
// operand ({{ 10 | subtract 3 }} is 10-3); a float on either side gives a
// float64, two unsigned integers a uint64, other integers an int64.
// minimum and maximum return the chosen operand in its own kind (int64,
// uint64 or float64), the second one on a tie.

type number struct {
	kind reflect.Kind // reflect.Int64, reflect.Uint64 or reflect.Float64
	i    int64
	u    uint64
	f    float64
}

func toNumber(fn string, v any) (number, error) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return number{kind: reflect.Int64, i: rv.Int()}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return number{kind: reflect.Uint64, u: rv.Uint()}, nil
	case reflect.Float32, reflect.Float64:
		return number{kind: reflect.Float64, f: rv.Float()}, nil
	}
	return number{}, fmt.Errorf("%s: %v (%T) is not a number", fn, v, v)
}

func (n number) float() float64 {
	switch n.kind {
	case reflect.Int64:
		return float64(n.i)
	case reflect.Uint64:
		return float64(n.u)
	}
	return n.f
}

func (n number) int() int64 {
	if n.kind == reflect.Uint64 {
		return int64(n.u)
	}
	return n.i
}

func (n number) value() any {
	switch n.kind {
	case reflect.Int64:
		return n.i
	case reflect.Uint64:
		return n.u
	}
	return n.f
}

// operands reads b (the argument) and a (the piped value).
func operands(fn string, b, a any) (x, y number, err error) {
	if x, err = toNumber(fn, a); err != nil {
		return
	}
	y, err = toNumber(fn, b)
	return
}

// arith applies an operation in the kind the operands call for.
func arith(fn string, b, a any, i func(x, y int64) (int64, error), u func(x, y uint64) (uint64, error), f func(x, y float64) float64) (any, error) {
	x, y, err := operands(fn, b, a)
	if err != nil {
		return nil, err
	}
	switch {
	case x.kind == reflect.Float64 || y.kind == reflect.Float64:
		if f == nil {
			return nil, fmt.Errorf("%s: %v and %v: want integers", fn, a, b)
		}
		return f(x.float(), y.float()), nil
	case x.kind == reflect.Uint64 && y.kind == reflect.Uint64:
		return u(x.u, y.u)
	}
	return i(x.int(), y.int())
}

func add(b, a any) (any, error) {
	return arith("add", b, a,
		func(x, y int64) (int64, error) { return x + y, nil },
		func(x, y uint64) (uint64, error) { return x + y, nil },
		func(x, y float64) float64 { return x + y })
}

func subtract(b, a any) (any, error) {
	return arith("subtract", b, a,
		func(x, y int64) (int64, error) { return x - y, nil },
		func(x, y uint64) (uint64, error) { return x - y, nil },
		func(x, y float64) float64 { return x - y })
}

func multiply(b, a any) (any, error) {
	return arith("multiply", b, a,
		func(x, y int64) (int64, error) { return x * y, nil },
		func(x, y uint64) (uint64, error) { return x * y, nil },
		func(x, y float64) float64 { return x * y })
}

var errDivZero = errors.New("division by zero")

func divide(b, a any) (any, error) {
	return arith("divide", b, a,
		func(x, y int64) (int64, error) {
			if y == 0 {
				return 0, fmt.Errorf("divide: %w", errDivZero)
			}
			return x / y, nil
		},
		func(x, y uint64) (uint64, error) {
			if y == 0 {
				return 0, fmt.Errorf("divide: %w", errDivZero)
			}
			return x / y, nil
		},
		func(x, y float64) float64 { return x / y })
}

func modulo(b, a any) (any, error) {
	return arith("modulo", b, a,
		func(x, y int64) (int64, error) {
			if y == 0 {
				return 0, fmt.Errorf("modulo: %w", errDivZero)
			}
			return x % y, nil
		},
		func(x, y uint64) (uint64, error) {
			if y == 0 {
				return 0, fmt.Errorf("modulo: %w", errDivZero)
			}
			return x % y, nil
		},
		nil) // no floats, as in consul-template
}

// less compares two numbers the way consul-template's minimum and maximum
// do: as floats when either is one, as uint64 when both are unsigned, else
// as int64.
func less(x, y number) bool {
	switch {
	case x.kind == reflect.Float64 || y.kind == reflect.Float64:
		return x.float() < y.float()
	case x.kind == reflect.Uint64 && y.kind == reflect.Uint64:
		return x.u < y.u
	}
	return x.int() < y.int()
}

func minimum(b, a any) (any, error) {
	x, y, err := operands("minimum", b, a)
	if err != nil {
		return nil, err
	}
	if less(x, y) {
		return x.value(), nil
	}
	return y.value(), nil
}

func maximum(b, a any) (any, error) {
	x, y, err := operands("maximum", b, a)
	if err != nil {
		return nil, err
	}
	if less(y, x) {
		return x.value(), nil
	}
	return y.value(), nil
}
