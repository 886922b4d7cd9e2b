package sandbox

import "strings"

// AddCustomer adds c, or replaces the customer with the same ID. An empty ID gets a generated
// "cus_..." one. c's email and reference ID then resolve to it.
func (s *Server) AddCustomer(c Customer) {
	if c.ID == "" {
		c.ID = newID("cus_")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.customers[c.ID]; ok {
		if s.byEmail[strings.ToLower(old.Email)] == c.ID {
			delete(s.byEmail, strings.ToLower(old.Email))
		}
		if s.byRef[old.ReferenceID] == c.ID {
			delete(s.byRef, old.ReferenceID)
		}
	}
	s.customers[c.ID] = &c
	s.indexLocked(&c)
}

func (s *Server) indexLocked(c *Customer) {
	if c.Email != "" {
		s.byEmail[strings.ToLower(c.Email)] = c.ID
	}
	if c.ReferenceID != "" {
		s.byRef[c.ReferenceID] = c.ID
	}
}

// Customers returns a copy of every known customer, in no particular order.
func (s *Server) Customers() []Customer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Customer, 0, len(s.customers))
	for _, c := range s.customers {
		out = append(out, *c)
	}
	return out
}

// resolveCustomerLocked finds, binds or creates the customer named by the identifiers, as
// Clink documents: customerId is primary and the others must match it; without it, email and
// reference ID must resolve to the same customer; nothing matching creates a customer. It
// returns nil and the error message when the identifiers are refused. s.mu must be held.
func (s *Server) resolveCustomerLocked(id, email, ref string) (*Customer, string) {
	if id == "" && email == "" && ref == "" {
		return nil, MsgCustomerNotFound
	}
	var byEmail, byRef *Customer
	if email != "" {
		byEmail = s.customers[s.byEmail[strings.ToLower(email)]]
	}
	if ref != "" {
		byRef = s.customers[s.byRef[ref]]
	}
	var c *Customer
	switch {
	case id != "":
		if c = s.customers[id]; c == nil {
			return nil, MsgCustomerNotFound
		}
	case byEmail != nil:
		c = byEmail
	case byRef != nil:
		c = byRef
	default:
		c = &Customer{ID: newID("cus_"), Email: email, ReferenceID: ref}
		s.customers[c.ID] = c
		s.indexLocked(c)
		return c, ""
	}
	if (byEmail != nil && byEmail != c) || (byRef != nil && byRef != c) ||
		(email != "" && c.Email != "" && !strings.EqualFold(email, c.Email)) ||
		(ref != "" && c.ReferenceID != "" && ref != c.ReferenceID) {
		return nil, MsgCustomerIdentifierNotMatched
	}
	// Bind the identifiers the customer did not have yet.
	if c.Email == "" && email != "" {
		c.Email = email
	}
	if c.ReferenceID == "" && ref != "" {
		c.ReferenceID = ref
	}
	s.indexLocked(c)
	return c, ""
}
