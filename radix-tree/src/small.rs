//! A vector that stores zero or one element inline and only allocates for two or more.
//!
//! Most nodes have one holder and at most one child, so this saves an allocation (and a cache
//! miss on every walk) per node.

/// Zero or one element inline, more on the heap.
#[derive(Debug, Default)]
pub(crate) enum SmallVec<T> {
    /// No element.
    #[default]
    Empty,
    /// Exactly one element, inline.
    One(T),
    /// Two or more elements.
    Many(Vec<T>),
}

impl<T> SmallVec<T> {
    /// A vector holding just `v`.
    pub(crate) fn one(v: T) -> Self {
        Self::One(v)
    }

    /// The elements as a slice.
    pub(crate) fn as_slice(&self) -> &[T] {
        match self {
            Self::Empty => &[],
            Self::One(v) => std::slice::from_ref(v),
            Self::Many(v) => v,
        }
    }

    /// The elements as a mutable slice.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            Self::Empty => &mut [],
            Self::One(v) => std::slice::from_mut(v),
            Self::Many(v) => v,
        }
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Whether there are no elements.
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self, Self::Empty)
    }

    /// Inserts `v` at `idx` (`idx <= len`), shifting later elements.
    pub(crate) fn insert(&mut self, idx: usize, v: T) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::One(v),
            Self::One(a) => Self::Many(if idx == 0 { vec![v, a] } else { vec![a, v] }),
            Self::Many(mut vec) => {
                vec.insert(idx, v);
                Self::Many(vec)
            }
        };
    }

    /// Appends `v`.
    pub(crate) fn push(&mut self, v: T) {
        let len = self.len();
        self.insert(len, v);
    }

    /// Removes and returns the element at `idx`, keeping the order of the rest.
    pub(crate) fn remove(&mut self, idx: usize) -> Option<T> {
        if idx >= self.len() {
            return None;
        }
        let (out, rest) = match std::mem::take(self) {
            Self::Empty => (None, Self::Empty),
            Self::One(a) => (Some(a), Self::Empty),
            Self::Many(mut vec) => {
                let out = vec.remove(idx);
                let rest = if vec.len() == 1 {
                    vec.pop().map_or(Self::Empty, Self::One)
                } else {
                    Self::Many(vec)
                };
                (Some(out), rest)
            }
        };
        *self = rest;
        out
    }

    /// Takes the elements of `v`, inline when there is at most one.
    pub(crate) fn from_vec(mut v: Vec<T>) -> Self {
        match v.len() {
            0 => Self::Empty,
            1 => v.pop().map_or(Self::Empty, Self::One),
            _ => Self::Many(v),
        }
    }
}

impl<T> std::ops::Deref for SmallVec<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T> std::ops::DerefMut for SmallVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<'a, T> IntoIterator for &'a SmallVec<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl<T> IntoIterator for SmallVec<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        match self {
            Self::Empty => Vec::new().into_iter(),
            Self::One(v) => vec![v].into_iter(),
            Self::Many(v) => v.into_iter(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_vec() {
        let mut s: SmallVec<u32> = SmallVec::default();
        let mut v: Vec<u32> = Vec::new();
        let ops: [(bool, usize, u32); 10] = [
            (true, 0, 5),
            (true, 0, 3),
            (true, 2, 9),
            (false, 1, 0),
            (true, 1, 4),
            (false, 0, 0),
            (false, 0, 0),
            (false, 0, 0),
            (false, 0, 0),
            (true, 0, 1),
        ];
        for (ins, idx, val) in ops {
            if ins {
                s.insert(idx, val);
                v.insert(idx, val);
            } else {
                let expect = (idx < v.len()).then(|| v.remove(idx));
                assert_eq!(s.remove(idx), expect);
            }
            assert_eq!(s.as_slice(), v.as_slice());
            assert_eq!(s.is_empty(), v.is_empty());
            assert_eq!(matches!(s, SmallVec::Many(_)), v.len() > 1);
        }
        s.push(7);
        s.as_mut_slice()[0] = 2;
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec![2, 7]);
        assert_eq!(SmallVec::one(1u8).len(), 1);
        assert!(SmallVec::<u8>::from_vec(vec![]).is_empty());
        assert!(matches!(SmallVec::from_vec(vec![1]), SmallVec::One(1)));
        assert_eq!(SmallVec::from_vec(vec![1, 2]).as_slice(), &[1, 2]);
    }
}
