package field

import (
	"errors"
	"fmt"
	"testing"
)

func TestListAndAll(t *testing.T) {
	var l List
	if l.Err() != nil {
		t.Fatal("empty list is an error")
	}
	l.Add("access VLAN", "5000", "a VLAN ID from 1 to 4094")
	l.Add("name", "", "1 to 15 characters")
	err := fmt.Errorf("add adapter: %w", l.Err())
	if !errors.Is(err, ErrInvalid) {
		t.Fatal("not ErrInvalid")
	}
	all := All(err)
	if len(all) != 2 || all[0].Field != "access VLAN" || all[1].Field != "name" {
		t.Fatalf("All = %+v", all)
	}
	if got := all[0].Error(); got != `access VLAN "5000" is invalid: a VLAN ID from 1 to 4094` {
		t.Fatalf("Error() = %q", got)
	}
}
