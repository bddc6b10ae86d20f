"""Operations on pictures: picture -> model input (geometry), named augmentation and
preprocessing ops (augment), acquisition shifts (shift), lesion crops (lesion_crop)."""
